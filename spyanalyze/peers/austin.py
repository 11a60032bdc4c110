"""Austin's output (3.x), text and binary (MOJO), as a ``RecordingData``.

Both formats carry the same facts (P403n1x87/austin, src/events.h and src/mojo.h): metadata
(``austin``, ``interval`` in µs, ``mode``; ``python``, ``duration``, ``errors`` and
``saturation`` when sampling ends), then one record per sample of one thread: process id,
interpreter id, thread id, its frames root first as (file, scope, line), and metrics.

* Text: ``# key: value`` metadata lines; a sample is ``P<pid>;T<iid>:<tid>;file:scope:line;...
  METRIC``, the thread id in decimal (src/argparse.c, ``HEAD_FORMAT_DEFAULT`` and
  ``SAMPLE_FORMAT_NORMAL``); ``:INVALID:`` marks a stack that could not be read, ``:GC:`` a
  sample taken while the garbage collector ran.
* MOJO: ``MOJ`` and a varint version, then events, each a byte (``MOJO_*`` in src/mojo.h)
  and its fields: varints (6 payload bits and a sign bit in the first byte, 7 bits in the next
  ones, least significant first) and NUL-terminated strings.  A frame is defined once
  (``FRAME``: key, file and scope string keys, line, end line, column, end column) and
  referenced by key (``FRAME_REF``); strings likewise (``STRING``).  Version 1 frames have only
  a line, version 3 stacks add the interpreter id; the thread id is a hex string.

The metric of a sample depends on the mode (src/py_thread.c, ``py_thread__emit_collapsed_stack``):
``wall`` and ``cpu`` give the µs since the process's previous sampling round (``cpu`` leaves idle
threads out, so its samples are CPU time), ``memory`` the bytes the GIL holder allocated since,
``full`` all three (``time,idle,memory``).  Samples have no timestamps: the time of each round
is rebuilt as the running sum of these deltas (all threads of a process in one round share
one), so ``t`` and the wall weights follow Austin's own clock.  Memory deltas are not a
resident set size and are left out.
"""

import re
from typing import Any, Dict, List, Optional, Tuple

from spyformat.errors import CorruptRecording
from spyformat.limits import FRAME_COST, STRING_COST

from spyanalyze.peers.builder import MAX_ID, PeerBuilder, ThreadIds, bounded_lines, number

MOJO_MAGIC = b"MOJ"
MOJO_METADATA, MOJO_STACK, MOJO_FRAME, MOJO_FRAME_INVALID, MOJO_FRAME_REF = 1, 2, 3, 4, 5
MOJO_FRAME_KERNEL, MOJO_GC, MOJO_IDLE, MOJO_METRIC_TIME, MOJO_METRIC_MEMORY = 6, 7, 8, 9, 10
MOJO_STRING, MOJO_STRING_REF = 11, 12
#: The newest MOJO version read here (src/mojo.h, ``MOJO_VERSION``).
MOJO_VERSIONS = (1, 2, 3)
#: A varint of more bytes than a 64-bit value needs is refused.
MAX_VARINT_BYTES = 10

#: Austin's thread ids are C ``uintptr_t``s: mostly kernel TIDs, now and then not (see ThreadIds).
MAX_THREAD_ID = (1 << 64) - 1
IDLE = 1
TORN = 4
UNKNOWN_SCOPE = "<unknown>"
_HEAD = re.compile(r"^P(\d+);T(\d+):(\d+)$")


def is_text(head: bytes) -> bool:
    return head.startswith(b"# austin: ")


class AustinClock:
    """Each process's clock, rebuilt from the time deltas of its sampling rounds: a round ends
    when a thread comes again or the delta changes."""

    def __init__(self):
        self._processes: Dict[int, list] = {}

    def tick(self, pid: int, tid: int, delta_us: int) -> int:
        state = self._processes.setdefault(pid, [0, None, set()])
        if tid in state[2] or delta_us != state[1]:
            state[0] += delta_us
            state[1] = delta_us
            state[2] = set()
        state[2].add(tid)
        return state[0] * 1000


class AustinSamples:
    """Turns Austin's samples into the builder's, whatever the format read them."""

    def __init__(self, builder: PeerBuilder):
        self.builder = builder
        self.metadata: Dict[str, str] = {}
        self.clock = AustinClock()
        self.threads = ThreadIds()

    @property
    def mode(self) -> str:
        return self.metadata.get("mode", "wall")

    def add(self, pid: int, tid: int, frames: Tuple[int, ...], time_us: Optional[int],
            idle: bool, torn: bool) -> None:
        if not 0 <= pid <= MAX_ID:
            raise CorruptRecording("a process id out of range (%d)" % pid)
        if not 0 <= tid <= MAX_THREAD_ID:
            raise CorruptRecording("a thread id out of range (%.30s)" % tid)
        t = self.clock.tick(pid, tid, time_us) if time_us is not None else 0
        tid, stand_in = self.threads.of(tid, str(tid))
        if stand_in:
            self.builder.thread(pid, tid, name=stand_in)
        cpu = time_us * 1000 if time_us is not None and not idle and self.mode in ("cpu", "full") else 0
        flags = (IDLE if idle else 0) | (TORN if torn else 0)
        self.builder.sample(self.builder.stack(frames), pid, tid, t, cpu, flags)

    def header(self, kind: str) -> Tuple[dict, Optional[dict]]:
        meta = self.metadata
        interval = meta.get("interval", "")
        mode = self.mode
        lacks = {"wall": "times rebuilt from its per-round deltas; no wall-clock start, thread names, "
                         "states, CPU time or memory",
                 "cpu": "times rebuilt from its per-round deltas; no wall-clock start, thread names, "
                        "idle samples or memory",
                 "full": "times rebuilt from its per-round deltas; no wall-clock start, thread names or "
                         "memory (its deltas are not a resident set size)",
                 "memory": "no timestamps, thread names, states, CPU time or memory (its deltas are not "
                           "a resident set size)"}
        header: Dict[str, Any] = {
            "recorder": "austin %s" % meta.get("austin", "?"), "peer_format": kind,
            "imported": "from %s (%s mode): %s" % (kind, mode, lacks.get(mode, "no CPU time or memory")),
            "interval_ns": int(interval) * 1000 if interval.isdigit() else None,
            "python_version": meta.get("python"), "austin_mode": mode}
        pids = sorted(self.builder.data.processes)
        if pids:
            header["pid"] = pids[0]
        trailer: Dict[str, int] = {}
        for key, (first, second) in (("errors", ("errors", "samples")),
                                     ("saturation", ("late", "ticks"))):
            match = re.fullmatch(r"(\d+)/(\d+)", meta.get(key, ""))
            if match:
                trailer[first], trailer[second] = int(match.group(1)), int(match.group(2))
        if meta.get("duration", "").isdigit():
            trailer["duration_ns"] = int(meta["duration"]) * 1000
        return header, trailer or None


# ------------------------------------------------------------------------------------------
# Text


def read_text(stream, max_memory: Optional[int] = None):
    builder = PeerBuilder(max_memory)
    samples = AustinSamples(builder)
    frame_ids: Dict[str, int] = {}
    for offset, raw in bounded_lines(stream, "Austin output"):
        line = raw.decode("utf-8", "replace")
        if not line:
            continue
        if line.startswith("# "):
            key, _, value = line[2:].partition(": ")
            if len(samples.metadata) < 256:
                samples.metadata[key] = value
            continue
        head, _, metric = line.rpartition(" ")
        parts = head.split(";")
        match = _HEAD.match(";".join(parts[:2]))
        if not match or not metric:
            raise CorruptRecording("not a sample of Austin's text output (P<pid>;T<iid>:<tid>;... "
                                   "METRIC)", offset)
        pid, tid = number(match.group(1), "a pid", offset), number(match.group(3), "a thread id", offset,
                                                                   high=MAX_THREAD_ID)
        frames: List[int] = []
        torn = False
        for text in parts[2:]:
            if text == ":INVALID:":
                torn = True
            elif text != ":GC:":
                fid = frame_ids.get(text)
                if fid is None:
                    fid = frame_ids[text] = _text_frame(builder, text, offset)
                frames.append(fid)
        time_us, idle = _metrics(samples.mode, metric, offset)
        samples.add(pid, tid, tuple(frames), time_us, idle, torn)
    if not samples.metadata.get("austin"):
        raise CorruptRecording("no '# austin:' metadata: not Austin's text output")
    header, trailer = samples.header("Austin text output")
    return builder.finish(header, trailer)


def _text_frame(builder, text, offset):
    """``file:scope:line`` (the file may hold colons, the scope and line do not)."""
    if text.count(":") < 2:
        return builder.frame(text, UNKNOWN_SCOPE, 0)
    file, scope, line = text.rsplit(":", 2)
    return builder.frame(file, scope or UNKNOWN_SCOPE,
                         number(line or "0", "a line number", offset, high=MAX_ID))


def _metrics(mode, metric, offset):
    """(time in µs or None, idle) from a text sample's metric field."""
    values = metric.split(",")
    if mode == "full":
        if len(values) != 3:
            raise CorruptRecording("a full-mode sample without time,idle,memory metrics", offset)
        return number(values[0], "a time metric", offset), values[1] == "1"
    if len(values) != 1:
        raise CorruptRecording("a %s-mode sample with %d metrics" % (mode, len(values)), offset)
    if mode == "memory":
        number(values[0], "a memory metric", offset, low=-(1 << 62), high=1 << 62)
        return None, False
    return number(values[0], "a time metric", offset), False


# ------------------------------------------------------------------------------------------
# MOJO


class MojoCursor:
    """A cursor over MOJO bytes; reading past the end raises ``EOFError``."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise EOFError
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        start = self.pos
        b = self.byte()
        n, sign, shift = b & 0x3F, b & 0x40, 6
        while b & 0x80:
            if self.pos - start >= MAX_VARINT_BYTES:
                raise CorruptRecording("a MOJO integer longer than %d bytes" % MAX_VARINT_BYTES, start)
            b = self.byte()
            n |= (b & 0x7F) << shift
            shift += 7
        return -n if sign else n

    def string(self) -> str:
        stop = self.data.find(b"\0", self.pos)
        if stop < 0:
            raise EOFError
        value = self.data[self.pos:stop]
        self.pos = stop + 1
        return value.decode("utf-8", "replace")


def read_mojo(stream, max_memory: Optional[int] = None):
    builder = PeerBuilder(max_memory)
    data = _read_all(stream, builder)
    if not data.startswith(MOJO_MAGIC):
        raise CorruptRecording("not a MOJO file (no MOJ magic)", 0)
    cursor = MojoCursor(data, len(MOJO_MAGIC))
    try:
        version = cursor.varint()
    except EOFError:
        raise CorruptRecording("file too short for a MOJO header", 0) from None
    if version not in MOJO_VERSIONS:
        raise CorruptRecording("MOJO version %d (this reader knows %s)"
                               % (version, ", ".join(map(str, MOJO_VERSIONS))), len(MOJO_MAGIC))
    reader = MojoEvents(builder, version)
    complete = cursor.pos          # the end of the last whole sample (or of the header)
    try:
        while cursor.pos < len(data):
            start = cursor.pos
            if reader.event(cursor.byte(), cursor, start):
                complete = start
        if reader.whole():
            reader.end_sample()
            complete = len(data)
    except EOFError:
        pass                       # a torn tail: Austin was stopped while writing
    if not reader.samples.metadata.get("austin") and not builder.count:
        raise CorruptRecording("a MOJO file with neither metadata nor samples", len(data))
    header, trailer = reader.samples.header("Austin MOJO %d output" % version)
    result = builder.finish(header, trailer)
    result.file_bytes = len(data)
    if complete < len(data):
        result.lost_bytes = len(data) - complete
        result.lost = ["the last %d bytes of the file (%.1f%%) hold a sample cut off: Austin was "
                       "stopped while writing" % (result.lost_bytes, 100.0 * result.lost_bytes / len(data))]
    return result


def _read_all(stream, builder):
    """The whole file, charged to the budget in pieces as it is read."""
    pieces = []
    while True:
        piece = stream.read(1 << 20)
        if not piece:
            return b"".join(pieces)
        builder.charge(2 * len(piece), "the file's bytes")
        pieces.append(piece)


class MojoEvents:
    """The state of a MOJO stream: its strings and frames, and the sample being read."""

    def __init__(self, builder: PeerBuilder, version: int):
        self.builder = builder
        self.version = version
        self.samples = AustinSamples(builder)
        self.strings: Dict[int, str] = {}
        self.frames: Dict[int, Tuple[int, int, int]] = {}       # key -> (file key, scope key, line)
        self.resolved: Dict[int, int] = {}                      # key -> builder frame id
        self.current: Optional[list] = None     # [pid, tid, frame keys, time, idle, torn, offset]

    def event(self, event: int, cursor: MojoCursor, offset: int) -> bool:
        """Read one event; True when it starts a sample (so all before it was whole)."""
        if event == MOJO_STACK:
            pid = cursor.varint()
            if self.version >= 3:
                cursor.varint()                                 # interpreter id
            tid_text = cursor.string()
            try:
                tid = int(tid_text, 16)
            except ValueError:
                raise CorruptRecording("a MOJO thread id that is not hexadecimal", offset) from None
            self.end_sample()
            self.current = [pid, tid, [], None, False, False, offset]
            return True
        if event == MOJO_FRAME_REF:
            key = cursor.varint()
            sample = self._sample(offset)
            if len(sample[2]) >= 1 << 16:
                raise CorruptRecording("a MOJO stack deeper than 65536 frames", offset)
            sample[2].append(key)
        elif event == MOJO_FRAME:
            key, file, scope, line = cursor.varint(), cursor.varint(), cursor.varint(), cursor.varint()
            if self.version >= 2:
                cursor.varint(), cursor.varint(), cursor.varint()   # end line, columns
            if key not in self.frames:
                self.builder.charge(FRAME_COST, "a MOJO frame", offset)
            self.frames[key] = (file, scope, line)
            self.resolved.pop(key, None)
        elif event == MOJO_STRING:
            key = cursor.varint()
            value = cursor.string()
            self.builder.charge(STRING_COST + len(value), "a MOJO string", offset)
            self.strings[key] = value
        elif event == MOJO_METRIC_TIME:
            self._sample(offset)[3] = cursor.varint()
        elif event == MOJO_METRIC_MEMORY:
            cursor.varint()
        elif event == MOJO_IDLE:
            self._sample(offset)[4] = True
        elif event == MOJO_FRAME_INVALID:
            self._sample(offset)[5] = True
        elif event == MOJO_FRAME_KERNEL:
            self._sample(offset)[2].append(("kernel", cursor.string()))
        elif event == MOJO_STRING_REF:
            cursor.varint()
        elif event == MOJO_METADATA:
            label, value = cursor.string(), cursor.string()
            if len(self.samples.metadata) < 256:
                self.samples.metadata[label] = value
        elif event != MOJO_GC:
            raise CorruptRecording("unknown MOJO event %d" % event, offset)
        return False

    def _sample(self, offset):
        if self.current is None:
            raise CorruptRecording("a MOJO sample event before any STACK", offset)
        return self.current

    def whole(self) -> bool:
        """Whether the sample being read has its metric (at the end of the file, one without
        was cut off)."""
        return self.current is None or self.current[3] is not None or self.samples.mode == "memory"

    def end_sample(self) -> None:
        """Add the sample read so far, if any, once its metric has come."""
        sample, self.current = self.current, None
        if sample is None:
            return
        pid, tid, keys, time_us, idle, torn, offset = sample
        if time_us is None and self.samples.mode != "memory":
            raise CorruptRecording("a MOJO sample without its time metric", offset)
        frames = tuple(self._frame(key, offset) for key in keys)
        self.samples.add(pid, tid, frames, time_us, idle, torn)

    def _frame(self, key, offset):
        if isinstance(key, tuple):                              # a kernel frame
            return self.builder.frame(key[0], key[1], 0)
        fid = self.resolved.get(key)
        if fid is None:
            if key not in self.frames:
                raise CorruptRecording("a MOJO frame reference to an undefined frame", offset)
            file, scope, line = self.frames[key]
            fid = self.resolved[key] = self.builder.frame(
                self._string(file, offset), self._string(scope, offset, UNKNOWN_SCOPE),
                line if 0 <= line <= MAX_ID else 0)
        return fid

    def _string(self, key, offset, default=None):
        value = self.strings.get(key, default)
        if value is None:
            raise CorruptRecording("a MOJO frame names an undefined string", offset)
        return value
