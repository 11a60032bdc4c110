"""What every importer of another profiler's file builds: a ``spyformat.RecordingData``, with
strings, frames and stacks interned and every new item charged to a ``ReadBudget`` before it is
kept, as the .spy reader does (spyformat.limits), since these files are untrusted input too."""

import array
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from spyformat import RecordingData
from spyformat.columns import SAMPLE_COLUMNS
from spyformat.errors import CorruptRecording
from spyformat.limits import (FRAME_COST, MAX_STACK_DEPTH, MAX_TIME_NS, RECORD_COST, SAMPLE_COST,
                              STACK_COST, STACK_ENTRY_COST, STRING_COST, ReadBudget)

#: A line of a text format longer than this is refused: the deepest stack spyrec keeps
#: (MAX_STACK_DEPTH frames) of long paths fits many times over.
MAX_LINE_BYTES = 64 << 20
#: Largest pid, tid, line number or sample count taken from a file: what the .spy columns hold.
MAX_ID = (1 << 32) - 1
MAX_COUNT = 1 << 53


def name_of(qualname: str) -> str:
    """A function's plain name from the qualified name the profilers print (``K.meth``)."""
    return qualname.rsplit(".", 1)[-1] if qualname and not qualname.startswith("<") else qualname


class PeerBuilder:
    """Collects one imported file into a ``RecordingData``.

    ``sample(stack, pid, tid, ...)`` appends one sample, ``samples(stack, count, ...)`` many
    alike (a collapsed line).  Sample columns grow in ``array`` buffers (8 bytes a value), so
    memory stays near what the budget charges.
    """

    def __init__(self, max_memory: Optional[int] = None):
        self.budget = ReadBudget(max_memory)
        self.data = RecordingData()
        self._strings: Dict[str, int] = {}
        self._frames: Dict[Tuple[int, int, int, int], int] = {}
        self._stacks: Dict[Tuple[int, ...], int] = {}
        self._columns = {name: array.array("q") for name in ("t", "pid", "tid", "stack", "cpu", "flags")}
        self._repeats: List[Tuple[int, int]] = []      # (sample index, extra copies)
        self.count = 0

    def charge(self, cost: int, what: str, offset: Optional[int] = None) -> None:
        self.budget.charge(cost, what, offset)

    def string(self, text: str) -> int:
        sid = self._strings.get(text)
        if sid is None:
            self.charge(STRING_COST + len(text), "a string of %d characters" % len(text))
            sid = self._strings[text] = len(self.data.strings)
            self.data.strings.append(text)
        return sid

    def frame(self, file: str, qualname: str, line: int, name: Optional[str] = None) -> int:
        """A frame id for (file, qualified name, line); ``name`` defaults to its last part."""
        line = line if 0 <= line <= MAX_ID else 0
        key = (self.string(file), self.string(name if name is not None else name_of(qualname)),
               self.string(qualname), line)
        fid = self._frames.get(key)
        if fid is None:
            self.charge(FRAME_COST, "a frame")
            fid = self._frames[key] = len(self.data.frames["file"])
            for field, value in zip(("file", "name", "qualname", "line", "column"), key + (-1,)):
                self.data.frames[field].append(value)
        return fid

    def stack(self, frames: Tuple[int, ...]) -> int:
        """A stack id for frame ids, root first."""
        sid = self._stacks.get(frames)
        if sid is None:
            if len(frames) > MAX_STACK_DEPTH:
                raise CorruptRecording("a stack of %d frames (more than %d)" % (len(frames), MAX_STACK_DEPTH))
            self.charge(STACK_COST + STACK_ENTRY_COST * len(frames), "a stack of %d frames" % len(frames))
            sid = self._stacks[frames] = len(self.data.stacks)
            self.data.stacks.append(frames)
        return sid

    def thread(self, pid: int, tid: int, **fields: Any) -> None:
        """Record a thread (its name when the file gives one) the first time it is seen."""
        key = (pid, tid)
        if key not in self.data.threads:
            self.charge(RECORD_COST, "a thread record")
            self.data.threads[key] = {"pid": pid, "tid": tid, **fields}
        if pid not in self.data.processes:
            self.charge(RECORD_COST, "a process record")
            self.data.processes[pid] = {"pid": pid}

    def sample(self, stack: int, pid: int, tid: int, t: int = 0, cpu: int = 0, flags: int = 0) -> None:
        self.samples(stack, 1, pid, tid, t, cpu, flags)

    def samples(self, stack: int, count: int, pid: int, tid: int, t: int = 0, cpu: int = 0,
                flags: int = 0) -> None:
        """``count`` samples alike; the copies are made by ``finish`` once all are charged."""
        if not 0 < count <= MAX_COUNT:
            raise CorruptRecording("a sample count of %d" % count)
        if not (0 <= pid <= MAX_ID and 0 <= tid <= MAX_ID):
            raise CorruptRecording("a process or thread id out of range (%d, %d)" % (pid, tid))
        if not 0 <= t < MAX_TIME_NS:
            raise CorruptRecording("a sample time out of range (%d ns)" % t)
        self.charge(count * SAMPLE_COST, "%d samples" % count)
        self.thread(pid, tid)
        for name, value in (("t", t), ("pid", pid), ("tid", tid), ("stack", stack), ("cpu", cpu),
                            ("flags", flags)):
            self._columns[name].append(value)
        if count > 1:
            self._repeats.append((len(self._columns["t"]) - 1, count - 1))
        self.count += count

    def finish(self, header: Dict[str, Any], trailer: Optional[Dict[str, Any]] = None) -> RecordingData:
        """The ``RecordingData``: sample columns as numpy arrays of the .spy dtypes."""
        data = self.data
        rows = len(self._columns["t"])
        repeat = np.ones(rows, dtype=np.int64)
        for index, extra in self._repeats:
            repeat[index] += extra
        for name, (dtype, _transforms) in SAMPLE_COLUMNS.items():
            values = self._columns.get(name)
            column = (np.frombuffer(values, dtype=np.int64) if values is not None and rows
                      else np.zeros(rows, dtype=np.int64))
            data.samples[name] = np.repeat(column, repeat).astype("<" + dtype)
            if values is not None:
                self._columns[name] = array.array("q")      # free the buffer as soon as copied
        data.sample_count = self.count
        data.header = header
        data.trailer = trailer if trailer is not None else {}   # nothing torn: the file is whole
        return data


class ThreadIds:
    """Thread ids as the .spy columns hold them: 32 bits, as Linux TIDs are.  A larger id (py-spy's
    pthread ids off Linux; one Austin read from the memory of a thread as it ended) stands for a
    thread too: it gets an id of its own, counted down from the largest, which no kernel TID
    reaches, and its thread a name that says the id the file gave."""

    def __init__(self):
        self._ids: Dict[int, int] = {}

    def of(self, value: int, written: str) -> Tuple[int, Optional[str]]:
        """(the id the columns hold, the thread's name when that is not the file's own id)."""
        if 0 <= value <= MAX_ID:
            return value, None
        tid = self._ids.get(value)
        if tid is None:     # (bounded as the thread records the importers make are charged)
            tid = self._ids[value] = MAX_ID - len(self._ids)
        return tid, "thread %s" % written


def bounded_lines(stream, what: str) -> Iterator[Tuple[int, bytes]]:
    """(byte offset, line without its newline) of a binary stream, refusing a line longer than
    ``MAX_LINE_BYTES`` before it is held whole."""
    offset = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise CorruptRecording("a line of %s longer than %d MiB" % (what, MAX_LINE_BYTES >> 20), offset)
        yield offset, line.rstrip(b"\r\n")
        offset += len(line)


def number(text: str, what: str, offset: Optional[int] = None, low: int = 0, high: int = MAX_COUNT) -> int:
    """A decimal integer field of a text format, within [low, high]."""
    try:
        value = int(text, 10)
    except ValueError:
        raise CorruptRecording("%s is not a number" % what, offset) from None
    if not low <= value <= high:
        raise CorruptRecording("%s is out of range (%s)" % (what, text[:30]), offset)
    return value
