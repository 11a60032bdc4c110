"""What a reader of a .spy file may be made to hold: the format's fixed bounds and the memory
budget of one load.

A file is untrusted input and compresses up to a thousand-fold, so its size says nothing about
what it can make a reader allocate.  Every count in a file (chunk sizes, strings, frames, stack
entries, samples, records) is therefore charged to a ``ReadBudget`` *before* anything of that
size is built, at the memory the analyser will need for it; a file that would pass the budget
is refused as corrupt.  The per-item costs below are what ``spyanalyze.load`` holds at its peak
per item, rounded up, so the budget is the reader's memory ceiling (see formats/spy.md,
"Reader limits").
"""

import os
import re
import resource

from spyformat.errors import CorruptRecording

#: Fixed bounds of the format (formats/spy.md, "Bounds").
MAX_PAYLOAD_BYTES = 64 << 20
MAX_RAW_BYTES = 256 << 20
#: HEADER, PROCESS, THREAD and TRAILER hold a few fields; a command line is at most 2 MiB on Linux.
MAX_RECORD_RAW_BYTES = 4 << 20
#: Keys in one map (a record, or a SAMPLES chunk's columns).
MAX_MAP_KEYS = 256
#: A record's keys unknown to the reader (skipped unread) may take as many bytes as its known
#: ones plus this: room for a later minor version's additions, none for padding a chunk out.
UNKNOWN_SLACK_BYTES = 64 << 10
#: Frames in one stack: what the recorder walks at most (spyrec.walker.MAX_DEPTH).
MAX_STACK_DEPTH = 1 << 16
#: Times (``t``, ``start_ns``, ``end_ns``, durations) are in [0, MAX_TIME_NS): 36 years.
MAX_TIME_NS = 1 << 60
#: ``start_wall_ns`` is in [0, MAX_WALL_NS) (the year 2116), so wall + t fits in an int64.
MAX_WALL_NS = 1 << 62

#: Estimated peak bytes per item of a loaded recording (DataFrames, Python lists, temporaries).
SAMPLE_COST = 320
STRING_COST = 96            # plus the string's length
FRAME_COST = 512
STACK_COST = 160
STACK_ENTRY_COST = 128
RECORD_COST = 1024          # a PROCESS or THREAD record, plus its raw size

#: The budget when none is given: half the machine's memory, and of the address space a
#: limit (ulimit -v) leaves, so a hostile file fails cleanly before the system does.
DEFAULT_SHARE = 0.5


def default_max_memory():
    ceiling = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        ceiling = min(ceiling, soft)
    return int(ceiling * DEFAULT_SHARE)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text):
    """``512M``, ``2G``, ``1.5GiB`` or a plain byte count, as bytes (units of 1024)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError("not a size: %r (use e.g. 512M or 2G)" % (text,))
    size = int(float(match.group(1)) * (1 << 10 * "_KMGT".index(match.group(2).upper() or "_")))
    if size < 1:
        raise ValueError("a memory budget must be at least one byte, not %r" % (text,))
    return size


class ReadBudget:
    """The memory one read may use, charged item by item as a file declares them.

    ``charge`` raises ``CorruptRecording`` naming what did not fit, so a crafted count fails
    before the allocation it asks for.  Decompressed bytes are counted apart (``inflate``):
    they are transient, but a file cannot ask for more of them than the budget either.
    """

    def __init__(self, max_memory=None):
        self.max_memory = default_max_memory() if max_memory is None else int(max_memory)
        self.used = 0
        self.inflated = 0

    def charge(self, cost, what, offset=None):
        if cost < 0 or self.used + cost > self.max_memory:
            raise CorruptRecording("%s would take %s, past the reader's memory budget of %s "
                                   "(%s already used; spyanalyze --max-memory raises it)"
                                   % (what, human(cost), human(self.max_memory), human(self.used)),
                                   offset)
        self.used += cost

    def forget(self):
        """Start afresh: for a reader that keeps nothing from one chunk to the next (dump)."""
        self.used = 0
        self.inflated = 0

    def inflate(self, raw_length, offset=None):
        """Check a chunk's decompressed size before it is decompressed: it must fit twice in what
        is left (the bytes, and what is built from them before it is charged), and in total."""
        if self.used + 2 * raw_length > self.max_memory:
            raise CorruptRecording("a chunk of %s decompressed does not fit in what is left of the "
                                   "reader's memory budget of %s (spyanalyze --max-memory raises it)"
                                   % (human(raw_length), human(self.max_memory)), offset)
        if self.inflated + raw_length > self.max_memory:
            raise CorruptRecording("the chunks decompress to more than the reader's memory budget "
                                   "of %s (spyanalyze --max-memory raises it)"
                                   % human(self.max_memory), offset)
        self.inflated += raw_length


def human(size):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return ("%d %s" if unit == "bytes" else "%.1f %s") % (size, unit)
        size /= 1024.0
