"""Reading a recording: chunks in order, every id, length and field checked against the spec,
within a memory budget (formats/spy.md, "Reader limits").  The result is plain Python lists and
numpy columns, so the analyser can build its tables without a loop per sample."""

import sys
from typing import (TYPE_CHECKING, Any, BinaryIO, Dict, Iterable, Iterator, List, Optional, Protocol,
                    Tuple)

from spyformat.chunks import Chunk, ChunkDecoder, Codec, Kind
from spyformat.columns import (REQUIRED_SAMPLE_COLUMNS, SAMPLE_COLUMNS, STRING_SAMPLE_COLUMNS, SampleFlag,
                               Transform, decode_column)
from spyformat.errors import CorruptRecording
from spyformat.limits import MAX_TIME_NS, RECORD_COST, SAMPLE_COST, ReadBudget
from spyformat.records import FrameKind, bound

if TYPE_CHECKING:
    import numpy as np


class Readable(Protocol):
    """What a recording is read from: a binary file, a pipe, or one followed as it grows."""

    def read(self, size: int) -> bytes: ...


class SpyReader:
    """Iterate the chunks of a recording from a binary stream (file or pipe).

    Yields the chunks of known kinds, with their payloads checked field by field, and enforces
    the order rules (one HEADER, first; nothing after the TRAILER).  After iteration,
    ``lost_bytes`` is the size of a torn tail (a recording cut off while a chunk was being
    written), ``torn`` a sentence saying what it was, and ``unknown_chunks`` counts chunks of
    kinds this reader does not know, which it skipped.  A damaged chunk raises
    ``CorruptRecording`` naming its offset.
    """

    READ_SIZE = 1 << 20

    def __init__(self, stream: "Readable", budget: Optional[ReadBudget] = None):
        self._stream = stream
        self._decoder = ChunkDecoder(budget)
        self.lost_bytes = 0
        self.torn: Optional[str] = None
        self.unknown_chunks = 0
        self.end_offset = 0
        self.header: Optional[Dict[str, Any]] = None
        self._saw_trailer = False

    @property
    def version(self) -> Optional[Tuple[int, int]]:
        return self._decoder.version

    @property
    def budget(self) -> ReadBudget:
        return self._decoder.budget

    @property
    def skipped(self) -> List[Tuple[int, int]]:
        """(offset, size) of the SAMPLES chunks skipped for a failed checksum."""
        return self._decoder.skipped

    def chunks(self) -> Iterator[Chunk]:
        decoder = self._decoder
        saw_any = False
        while True:
            data = self._stream.read(self.READ_SIZE)
            if not data:
                break
            saw_any = True
            decoder.feed(data)
            yield from self._in_order(decoder.chunks())
        decoder.finish()
        yield from self._in_order(decoder.chunks())
        if not saw_any:
            raise CorruptRecording("empty file: not a .spy recording", 0)
        if decoder.version is None:
            raise CorruptRecording("file too short for a .spy preamble", 0)
        self.lost_bytes = decoder.pending
        self.torn = decoder.torn_tail()
        self.end_offset = decoder.offset

    def _in_order(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """The chunks of known kinds, once the order rules are checked and unknown ones counted."""
        for chunk in chunks:
            if self._saw_trailer:
                raise CorruptRecording("a chunk follows the TRAILER, which must be last", chunk.offset)
            if self.header is None and chunk.kind != Kind.HEADER:
                raise CorruptRecording("the first chunk is of kind %d, not the HEADER" % chunk.kind,
                                       chunk.offset)
            if chunk.kind == Kind.HEADER:
                self._check_header(chunk)
            self._saw_trailer = chunk.kind == Kind.TRAILER
            if chunk.payload is None:
                self.unknown_chunks += 1
                continue
            yield chunk

    def _check_header(self, chunk):
        if self.header is not None:
            raise CorruptRecording("a second HEADER (there is exactly one)", chunk.offset)
        if chunk.codec != Codec.NONE:
            raise CorruptRecording("the HEADER is compressed (its codec must be 0)", chunk.offset)
        if tuple(chunk.payload["format"]) != self.version:
            raise CorruptRecording("the HEADER says format %d.%d, the preamble %d.%d"
                                   % (tuple(chunk.payload["format"]) + self.version), chunk.offset)
        self.header = chunk.payload


class RecordingData:
    """Everything a recording holds, as plain Python lists plus numpy sample columns.

    This is the neutral, dependency-light result of reading; spyanalyze builds its DataFrames
    from it.  Ids index directly into ``strings``, ``frames`` and ``stacks``.  ``lost`` holds a
    sentence for each way the file lost data (a torn tail, no trailer): empty for a recording
    that is whole.
    """

    def __init__(self) -> None:
        self.version: Optional[Tuple[int, int]] = None
        self.header: Dict[str, Any] = {}
        self.trailer: Optional[Dict[str, Any]] = None
        self.strings: List[str] = []
        self.frames: Dict[str, List[int]] = {"file": [], "name": [], "qualname": [], "line": [],
                                             "column": [], "kind": [], "source": []}
        self.stacks: List[Tuple[int, ...]] = []            # tuples of frame ids, root first
        self.processes: Dict[int, Dict[str, Any]] = {}         # pid -> merged PROCESS fields
        self.threads: Dict[Tuple[int, int], Dict[str, Any]] = {}  # (pid, tid) -> merged THREAD fields
        self.samples: Dict[str, "np.ndarray"] = {}           # column name -> numpy array
        self.sample_count = 0
        self.lost_bytes = 0
        self.file_bytes = 0
        self.lost: List[str] = []
        self.unknown_chunks = 0
        self.chunk_count = 0


def _expect(condition, reason, offset):
    if not condition:
        raise CorruptRecording(reason, offset)


#: Sample columns whose values have a range of their own (formats/spy.md, SAMPLES):
#: name -> (low, high exclusive).  ``stack`` is checked against the stacks defined so far.
_COLUMN_RANGES = {"t": (0, MAX_TIME_NS), "cpu": (-(1 << 53) + 1, 1 << 53), "rss": (0, 1 << 53),
                  "flags": (0, (SampleFlag.IDLE | SampleFlag.GIL | SampleFlag.TORN) + 1)}


def sample_columns(payload, offset, data, budget):
    """Decode a SAMPLES chunk's known columns into numpy arrays, checked against the spec."""
    count, columns = payload["count"], payload["columns"]
    budget.charge(count * SAMPLE_COST, "a SAMPLES chunk of %d samples" % count, offset)
    for name in REQUIRED_SAMPLE_COLUMNS:
        _expect(name in columns, "SAMPLES chunk lacks the %r column" % name, offset)
    decoded = {}
    for name, (dtype, transforms, raw) in columns.items():
        if name not in SAMPLE_COLUMNS:
            continue                    # a column of a later minor version
        _expect(dtype == SAMPLE_COLUMNS[name][0], "column %r has dtype %r, not %r"
                % (name, dtype, SAMPLE_COLUMNS[name][0]), offset)
        _expect(transforms & ~(Transform.DELTA | Transform.SHUFFLE) == 0,
                "column %r has unknown transform bits %d" % (name, transforms), offset)
        try:
            values = decode_column(raw, dtype, transforms, count)
        except CorruptRecording as exc:
            raise CorruptRecording("column %r: %s" % (name, exc.reason), offset)
        if count and name in _COLUMN_RANGES:
            low, high = _COLUMN_RANGES[name]
            _expect(low <= int(values.min()) and int(values.max()) < high,
                    "column %r holds a value outside [%s, %s)" % (name, bound(low), bound(high)), offset)
        if name == "stack" and count:
            _expect(int(values.max()) < len(data.stacks), "a sample refers to an undefined stack", offset)
        if name in STRING_SAMPLE_COLUMNS and count:
            _expect(int(values.max()) <= len(data.strings),
                    "column %r refers to a string that is not defined yet" % name, offset)
        decoded[name] = values
    return decoded


def read_recording(stream: BinaryIO, max_memory: Optional[int] = None) -> RecordingData:
    """Read a whole recording into ``RecordingData``, validating every id, length and field.

    ``max_memory`` is the reader's budget in bytes (default: ``limits.default_max_memory``);
    a file that needs more is refused as corrupt before it is allocated.
    """
    builder = RecordingBuilder(max_memory)
    reader = SpyReader(stream, builder.budget)
    for chunk in reader.chunks():
        builder.add(chunk)
    return builder.result(reader, finished=True)


class RecordingBuilder:
    """``RecordingData`` put together chunk by chunk (``add``), readable at any point
    (``result``): what ``read_recording`` does at once, and a live view as a file grows."""

    def __init__(self, max_memory: Optional[int] = None):
        self.data = RecordingData()
        self.budget = ReadBudget(max_memory)
        self._parts: Dict[str, List[Tuple[int, "np.ndarray"]]] = {}

    def add(self, chunk: Chunk) -> None:
        """Take one chunk, as ``SpyReader.chunks`` yields it."""
        data, budget = self.data, self.budget
        payload, offset, kind = chunk.payload, chunk.offset, chunk.kind
        data.chunk_count += 1
        if kind == Kind.HEADER:
            data.header = payload
        elif kind == Kind.STRINGS:
            _expect(payload["first"] == len(data.strings), "string ids out of sequence", offset)
            data.strings.extend(payload["values"])
        elif kind == Kind.FRAMES:
            _add_frames(data, payload, offset)
        elif kind == Kind.STACKS:
            _add_stacks(data, payload, offset)
        elif kind in (Kind.PROCESS, Kind.THREAD):
            budget.charge(RECORD_COST + chunk.size, "a %s record" % Kind.NAMES[kind], offset)
            if kind == Kind.PROCESS:
                data.processes.setdefault(payload["pid"], {}).update(payload)
            else:
                data.threads.setdefault((payload["pid"], payload["tid"]), {}).update(payload)
        elif kind == Kind.SAMPLES:
            for name, values in sample_columns(payload, offset, data, budget).items():
                self._parts.setdefault(name, []).append((data.sample_count, values))
            data.sample_count += payload["count"]
        elif kind == Kind.TRAILER:
            data.trailer = payload

    def result(self, reader: SpyReader, finished: bool = False) -> RecordingData:
        """The recording as read so far: the whole of it once ``reader`` is ``finished`` (its
        torn tail and missing trailer told in ``lost``); before that, a copy that later chunks
        leave as it is."""
        data = self.data if finished else self._copy()
        data.version = reader.version
        if finished:
            data.lost_bytes = reader.lost_bytes
            data.file_bytes = reader.end_offset + reader.lost_bytes
            data.lost = lost_data(reader, data.trailer is not None)
        data.unknown_chunks = reader.unknown_chunks
        total = data.sample_count
        for name, (dtype, _transforms) in SAMPLE_COLUMNS.items():
            parts = self._parts.pop(name, []) if finished else self._parts.get(name, [])
            data.samples[name] = _joined(parts, dtype, total)  # each column's parts freed in turn
        return data

    def _copy(self) -> RecordingData:
        data, copy = self.data, RecordingData()
        copy.header, copy.trailer = data.header, data.trailer
        copy.strings = list(data.strings)
        copy.frames = {field: list(values) for field, values in data.frames.items()}
        copy.stacks = list(data.stacks)
        copy.processes = {pid: dict(fields) for pid, fields in data.processes.items()}
        copy.threads = {key: dict(fields) for key, fields in data.threads.items()}
        copy.sample_count, copy.chunk_count = data.sample_count, data.chunk_count
        return copy


def _add_frames(data, payload, offset):
    _expect(payload["first"] == len(data.frames["file"]), "frame ids out of sequence", offset)
    n = len(payload["file"])
    if "kind" not in payload:  # before 1.2, or only Python frames
        payload["kind"] = [FrameKind.PYTHON] * n
    if "source" not in payload:  # before 1.3, or no frame with a source line
        payload["source"] = [0] * n
    for field in ("file", "name", "qualname", "line", "column", "kind", "source"):
        values = payload[field]
        _expect(len(values) == n, "FRAMES columns differ in length", offset)
        if field in ("file", "name", "qualname") and values:
            _expect(max(values) < len(data.strings),
                    "FRAMES %s refers to a string that is not defined yet" % field, offset)
        if field == "source" and values:  # 1 + a string id
            _expect(max(values) <= len(data.strings),
                    "FRAMES source refers to a string that is not defined yet", offset)
    for field in data.frames:
        data.frames[field].extend(payload[field])


def _add_stacks(data, payload, offset):
    _expect(payload["first"] == len(data.stacks), "stack ids out of sequence", offset)
    lengths, frames = payload["lengths"], payload["frames"]
    _expect(sum(lengths) == len(frames), "STACKS lengths do not add up", offset)
    _expect(not frames or max(frames) < len(data.frames["file"]),
            "STACKS frames refers to a frame that is not defined yet", offset)
    position = 0
    for n in lengths:
        data.stacks.append(tuple(frames[position:position + n]))
        position += n


def _joined(parts, dtype, total):
    """One sample column from its (first sample, values) parts, chunk by chunk."""
    import numpy as np

    if sum(len(values) for _, values in parts) == total:
        return (np.concatenate([v for _, v in parts]) if parts
                else np.zeros(0, dtype="<" + dtype))
    full = np.zeros(total, dtype="<" + dtype)  # an optional column missing from some chunks
    for start, values in parts:
        full[start:start + len(values)] = values
    return full


def lost_data(reader: SpyReader, has_trailer: bool) -> List[str]:
    """Sentences on what a read recording lost, from a finished ``SpyReader``."""
    lost = []
    size = reader.end_offset + reader.lost_bytes
    if reader.skipped:
        skipped = sum(size for _offset, size in reader.skipped)
        lost.append("%d SAMPLES chunk%s (%d bytes, %.1f%% of the file) failed %s checksum and %s "
                    "skipped, the first at byte offset %d: %s samples are lost"
                    % (len(reader.skipped), "s" if len(reader.skipped) > 1 else "", skipped,
                       100.0 * skipped / size, "their" if len(reader.skipped) > 1 else "its",
                       "were" if len(reader.skipped) > 1 else "was", reader.skipped[0][0],
                       "their" if len(reader.skipped) > 1 else "its"))
    if reader.lost_bytes:
        lost.append("the last %d bytes of the file (%.1f%%) could not be read: %s"
                    % (reader.lost_bytes, 100.0 * reader.lost_bytes / size, reader.torn))
    if not has_trailer:
        lost.append("the recording has no trailer: the recorder did not stop cleanly (it was killed, "
                    "or the file was cut), so its end may be missing")
    return lost


def open_source(path: str) -> BinaryIO:
    """Open a recording path for reading; ``-`` is standard input."""
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")
