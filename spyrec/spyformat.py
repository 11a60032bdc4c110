"""The .spy recording format, version 1.0: the one codec shared by the recorder and the analyser.

``formats/spy.md`` is the normative specification; this module implements it and is the only
place that knows a chunk kind, a field name or a column encoding.  ``spyrec`` writes with
``SpyWriter``; ``spyanalyze`` reads with ``SpyReader`` / ``read_recording``.  Neither side may
define format facts of its own, so the two cannot drift apart.

Layout in one picture (all integers little-endian)::

    preamble   MAGIC (8 bytes)  major u8  minor u8  reserved u16 = 0
    chunk*     payload_length u32 | kind u8 | codec u8 | flags u16 | raw_length u32 | crc32 u32
               payload (payload_length bytes; raw_length bytes once decompressed; msgpack)

The CRC covers the first 12 header bytes and the payload, so a torn or flipped chunk is caught
before any of it is decoded.  A file is a stream: the writer never seeks, and a reader that hits
the end of the data inside a chunk stops at the last complete chunk and reports what was lost.

Untrusted input: payloads are msgpack (no code execution, extension types are refused), every
length and count is charged to a memory budget before anything of that size is allocated
(``spylimits``), decompression is capped at the declared raw length, and every field is checked
against the spec as it is decoded (``spyrecords``).
"""

import array
import itertools
import operator
import struct
import sys
import zlib

import msgpack

from spyrec.errors import CorruptRecording, IncompatibleRecording
from spyrec.spyrecords import bound
from spyrec.spylimits import (MAX_PAYLOAD_BYTES, MAX_RAW_BYTES, MAX_RECORD_RAW_BYTES, MAX_TIME_NS,
                              RECORD_COST, SAMPLE_COST, ReadBudget)
from spyrec.spyrecords import decode_record

MAGIC = b"\x89SPY\r\n\x1a\n"
FORMAT_VERSION = (1, 1)
PREAMBLE = struct.Struct("<8sBBH")
CHUNK_HEADER = struct.Struct("<IBBHII")
#: The CRC covers the header up to (not including) the crc field, then the payload.
CRC_COVERED_HEADER = 12


class Kind:
    """Chunk kinds.  A reader skips any kind it does not know (forward compatibility)."""

    HEADER = 1
    STRINGS = 2
    FRAMES = 3
    STACKS = 4
    PROCESS = 5
    THREAD = 6
    SAMPLES = 7
    TRAILER = 8

    NAMES = {1: "HEADER", 2: "STRINGS", 3: "FRAMES", 4: "STACKS", 5: "PROCESS", 6: "THREAD",
             7: "SAMPLES", 8: "TRAILER"}


class Codec:
    """Per-chunk compression.  zlib is the default: see docs/benchmarks.md for the measurement."""

    NONE = 0
    ZLIB = 1
    NAMES = {0: "none", 1: "zlib"}
    BY_NAME = {"none": 0, "zlib": 1}


class SampleFlag:
    """Bits of the ``flags`` sample column."""

    IDLE = 1      # the thread was not running (not on a CPU / not runnable) when sampled
    GIL = 2       # the thread held the GIL
    TORN = 4      # the stack could not be read consistently; it holds what was read


class Transform:
    """Bits describing how a sample column's bytes encode its values."""

    DELTA = 1     # stored values are differences; the reader takes a running sum (first is absolute)
    SHUFFLE = 2   # bytes are stored plane by plane: every value's byte 0, then every byte 1, ...


#: dtype code -> (struct/array typecode, item size).  numpy reads the same codes with "<" prepended.
DTYPES = {"u1": ("B", 1), "u2": ("H", 2), "u4": ("I", 4), "i4": ("i", 4), "u8": ("Q", 8), "i8": ("q", 8)}

#: The sample columns written by format 1.1: name -> (dtype, transforms).  Readers ignore
#: columns they do not know and treat a missing optional column as zeros.
SAMPLE_COLUMNS = {
    "t": ("i8", Transform.DELTA | Transform.SHUFFLE),      # ns since the header's monotonic origin
    "pid": ("u4", Transform.SHUFFLE),                        # process id
    "tid": ("u4", Transform.SHUFFLE),                        # native (kernel) thread id
    "stack": ("u4", Transform.SHUFFLE),                      # stack id
    "cpu": ("i8", Transform.SHUFFLE),                        # ns of CPU since the thread's last sample
    "rss": ("i8", Transform.DELTA | Transform.SHUFFLE),     # process resident set size, bytes
    "flags": ("u1", 0),                                      # SampleFlag bits
    "syscall": ("u4", Transform.SHUFFLE),   # 1.1: 1 + string id of the system call waited in
    "wchan": ("u4", Transform.SHUFFLE),     # 1.1: 1 + string id of the kernel function
}
#: Sample columns holding 1 + a string id, 0 for none.
STRING_SAMPLE_COLUMNS = ("syscall", "wchan")
REQUIRED_SAMPLE_COLUMNS = ("t", "tid", "stack")


def _assert_little_endian():
    if sys.byteorder != "little":  # pragma: no cover - every platform we record on is little-endian
        raise RuntimeError("the .spy codec assumes a little-endian host")


_assert_little_endian()


# --------------------------------------------------------------------------------------------
# Column encoding


class ColumnEncoder:
    """Encodes one sample column from consecutive slices of its values, so that a large batch
    can be encoded a slice at a time (see ``SpyWriter.work``) into the same bytes as at once:
    DELTA carries the last value over, SHUFFLE keeps each byte plane's pieces apart."""

    def __init__(self, dtype, transforms):
        self._typecode, self._size = DTYPES[dtype]
        self._delta = bool(transforms & Transform.DELTA)
        self._planes = self._size if transforms & Transform.SHUFFLE and self._size > 1 else 1
        self._pieces = [[] for _ in range(self._planes)]
        self._previous = 0

    def add(self, values):
        if self._delta and values:  # each value minus the one before (the first minus 0)
            previous, self._previous = self._previous, values[-1]
            values = list(map(operator.sub, values, itertools.chain((previous,), values)))
        data = array.array(self._typecode, values).tobytes()
        planes = self._planes
        for plane, pieces in enumerate(self._pieces):
            pieces.append(data[plane::planes] if planes > 1 else data)
        return self

    def encoded(self):
        return b"".join(b"".join(pieces) for pieces in self._pieces)


def encode_column(values, dtype, transforms):
    """Encode a sequence of ints as the bytes of one sample column."""
    return ColumnEncoder(dtype, transforms).add(list(values)).encoded()


def decode_column(data, dtype, transforms, count):
    """Decode one sample column into a numpy array of ``count`` values (no loop per value)."""
    import numpy as np

    if dtype not in DTYPES:
        raise CorruptRecording("unknown column dtype %r" % (dtype,))
    size = DTYPES[dtype][1]
    if len(data) != count * size:
        raise CorruptRecording("column holds %d bytes, expected %d x %d" % (len(data), count, size))
    raw = np.frombuffer(data, dtype=np.uint8)
    if transforms & Transform.SHUFFLE and size > 1:
        raw = raw.reshape(size, count).T
    values = np.ascontiguousarray(raw).view("<" + dtype).reshape(count)
    if transforms & Transform.DELTA:
        values = np.cumsum(values, dtype=values.dtype)
    return values


# --------------------------------------------------------------------------------------------
# Chunk framing


def encode_preamble(version=FORMAT_VERSION):
    return PREAMBLE.pack(MAGIC, version[0], version[1], 0)


#: zlib's level for every compressed chunk.
ZLIB_LEVEL = 6


def encode_chunk(kind, obj, codec=Codec.ZLIB, level=ZLIB_LEVEL):
    """Frame one record: msgpack, compress, prefix the header with its CRC."""
    raw = msgpack.packb(obj, use_bin_type=True)
    if codec == Codec.ZLIB:
        payload = zlib.compress(raw, level)
    elif codec == Codec.NONE:
        payload = raw
    else:
        raise ValueError("unknown codec %r" % codec)
    return frame_chunk(kind, codec, payload, len(raw))


def frame_chunk(kind, codec, payload, raw_length):
    """A chunk's header, with its CRC, followed by its (compressed) payload."""
    head = CHUNK_HEADER.pack(len(payload), kind, codec, 0, raw_length, 0)[:CRC_COVERED_HEADER]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def inflate(codec, payload, raw_length, offset):
    """Decompress one chunk payload, never past its declared raw length."""
    if codec == Codec.ZLIB:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, raw_length + 1)
        except zlib.error as exc:
            raise CorruptRecording("chunk does not decompress (%s)" % exc, offset)
        if len(raw) != raw_length or inflater.unconsumed_tail:
            raise CorruptRecording("chunk decompresses to more or less than its declared size", offset)
        return raw
    if codec == Codec.NONE:
        if len(payload) != raw_length:
            raise CorruptRecording("uncompressed chunk size does not match its header", offset)
        return payload
    raise CorruptRecording("unknown compression codec %d" % codec, offset)


#: Kinds whose records are a few fields (bounded by MAX_RECORD_RAW_BYTES), not tables.
_RECORD_KINDS = frozenset((Kind.HEADER, Kind.PROCESS, Kind.THREAD, Kind.TRAILER))


class Chunk:
    """One framed record as read from a file: its kind, where it starts, its codec and its
    decoded payload (None for a kind this reader does not know, which it never decompresses)."""

    __slots__ = ("kind", "offset", "payload", "size", "codec")

    def __init__(self, kind, offset, payload, size, codec=Codec.NONE):
        self.kind = kind
        self.offset = offset
        self.payload = payload
        self.size = size
        self.codec = codec


class ChunkDecoder:
    """Sans-IO decoder: feed it bytes as they arrive, take complete chunks out.

    File, pipe and follow modes are thin loops around it; after the last feed, ``finish()``
    says no more data comes.  ``pending`` then is the torn tail of a recording that was cut off
    mid-chunk, and ``torn_tail()`` says what it was; ``skipped`` lists the (offset, size) of
    SAMPLES chunks that failed their checksum and were skipped (see ``_skippable``).  Every
    chunk is charged to ``budget`` (a ``spylimits.ReadBudget``) before it is decompressed.
    """

    def __init__(self, budget=None):
        self._buffer = bytearray()
        self._consumed = 0          # absolute file offset of _buffer[0]
        self.version = None
        self.budget = ReadBudget() if budget is None else budget
        self.final = False
        self.skipped = []

    def finish(self):
        self.final = True

    @property
    def pending(self):
        return len(self._buffer)

    @property
    def offset(self):
        return self._consumed

    def feed(self, data):
        self._buffer += data

    def torn_tail(self):
        """A sentence on the partial chunk left in the buffer, or None when there is none."""
        if not self._buffer:
            return None
        if len(self._buffer) < CHUNK_HEADER.size:
            return "the file ends %d bytes into the header of the chunk at byte offset %d" % (
                len(self._buffer), self._consumed)
        length = CHUNK_HEADER.unpack_from(self._buffer)[0]
        return ("the chunk at byte offset %d claims %d bytes of payload but the file ends %d bytes "
                "into it" % (self._consumed, length, len(self._buffer) - CHUNK_HEADER.size))

    def chunks(self):
        """Yield every complete chunk in the buffer; leave a partial one for the next feed."""
        if self.version is None:
            if len(self._buffer) < PREAMBLE.size:
                if not MAGIC.startswith(bytes(self._buffer[:len(MAGIC)])):
                    raise CorruptRecording("not a .spy recording (bad magic)", 0)
                return
            magic, major, minor, reserved = PREAMBLE.unpack_from(self._buffer)
            if magic != MAGIC:
                raise CorruptRecording("not a .spy recording (bad magic)", 0)
            if major != FORMAT_VERSION[0]:
                raise IncompatibleRecording(
                    "recording format %d.%d cannot be read by this version (reads %d.x); "
                    "use a spyanalyze that supports format %d" % (major, minor, FORMAT_VERSION[0], major))
            if reserved:
                raise CorruptRecording("the preamble's reserved field is %d, not 0" % reserved, 10)
            self.version = (major, minor)
            self._advance(PREAMBLE.size)
        while len(self._buffer) >= CHUNK_HEADER.size:
            length, kind, codec, flags, raw_length, crc = CHUNK_HEADER.unpack_from(self._buffer)
            offset = self._consumed
            if length > MAX_PAYLOAD_BYTES or raw_length > MAX_RAW_BYTES:
                raise CorruptRecording("chunk claims %d bytes (%d raw), over the %d-byte bound"
                                       % (length, raw_length, MAX_PAYLOAD_BYTES), offset)
            if kind in _RECORD_KINDS and raw_length > MAX_RECORD_RAW_BYTES:
                raise CorruptRecording("%s chunk claims %d raw bytes, over the %d-byte bound of a record"
                                       % (Kind.NAMES[kind], raw_length, MAX_RECORD_RAW_BYTES), offset)
            end = CHUNK_HEADER.size + length
            if len(self._buffer) < end:
                return
            view = memoryview(self._buffer)
            payload = bytes(view[CHUNK_HEADER.size:end])
            actual = zlib.crc32(payload, zlib.crc32(view[:CRC_COVERED_HEADER]))
            view.release()
            if actual != crc:
                skippable = self._skippable(kind, end)
                if skippable is None:
                    return                  # judged once the next chunk's header has arrived
                if not skippable:
                    raise CorruptRecording("checksum mismatch in chunk of kind %d" % kind, offset)
                self.skipped.append((offset, end))          # end: the chunk's size
                self._advance(end)
                continue
            if flags:
                raise CorruptRecording("chunk flags are %d, not 0 (the field is reserved)" % flags, offset)
            self._advance(end)
            if kind not in Kind.NAMES:
                yield Chunk(kind, offset, None, end, codec)     # skipped unread: a later minor's
                continue
            self.budget.inflate(raw_length, offset)
            raw = inflate(codec, payload, raw_length, offset)
            del payload
            yield Chunk(kind, offset, decode_record(Kind.NAMES[kind], raw, offset, self.budget), end, codec)

    def _skippable(self, kind, end):
        """Whether a chunk that failed its checksum may be skipped: a SAMPLES chunk (no later
        chunk depends on one) followed by the end of the file or by a chunk header that passes
        every bound, so that only its own bytes were damaged and its length can be trusted.
        None when that cannot be told until more data arrives."""
        if kind != Kind.SAMPLES:
            return False
        if len(self._buffer) < end + CHUNK_HEADER.size:
            return len(self._buffer) == end if self.final else None
        length, kind, codec, flags, raw_length, _crc = CHUNK_HEADER.unpack_from(self._buffer, end)
        return (kind in Kind.NAMES and codec in Codec.NAMES and flags == 0
                and length <= MAX_PAYLOAD_BYTES and raw_length <= MAX_RAW_BYTES)

    def _advance(self, count):
        del self._buffer[:count]
        self._consumed += count


# --------------------------------------------------------------------------------------------
# Writing


#: A slice of a batch's encoding: rows of one column, or bytes of its compression.  Small
#: enough that a slice done between two rounds at 1 kHz does not make the next one late.
WRITE_SLICE_ROWS = 4096
WRITE_SLICE_BYTES = 128 * 1024


class SpyWriter:
    """Stream a recording: intern definitions, batch samples into columns, flush chunks.

    The writer never seeks, so ``stream`` may be a pipe.  Definitions (strings, frames,
    stacks) are emitted in the same flush as, and before, the first samples that use them.
    ``flush_interval_ns`` bounds how much a killed recorder can lose; ``max_batch`` bounds how
    much memory pending samples take.  The interning tables are bounded too: past
    ``max_interned`` entries they are forgotten and later definitions get fresh ids (the format
    allows the same content under several ids), so hours of recording stay in bounded memory.
    """

    def __init__(self, stream, codec=Codec.ZLIB, flush_interval_ns=1_000_000_000, max_batch=65536,
                 max_interned=50_000):
        self._stream = stream
        self.codec = codec
        self.flush_interval_ns = flush_interval_ns
        self.max_batch = max_batch
        self.max_interned = max_interned
        self._strings = {}
        self._frames = {}
        self._stacks = {}
        self._string_count = 0
        self._frame_count = 0
        self._stack_count = 0
        self._new_strings = []
        self._new_frames = ([], [], [], [], [])
        self._new_stacks_lengths = []
        self._new_stacks_frames = []
        self._records = []          # (kind, payload) process/thread records, in order
        self._columns = {name: [] for name in SAMPLE_COLUMNS}
        self._last_flush_ns = None
        self._pending = None  # the batch of samples being encoded: a generator of slices
        self.bytes_written = 0
        self.samples_written = 0
        self._stream.write(encode_preamble())
        self.bytes_written += PREAMBLE.size

    # -- definitions ---------------------------------------------------------------------

    def string_id(self, text):
        sid = self._strings.get(text)
        if sid is None:
            if len(self._strings) >= self.max_interned:
                self._strings.clear()
            sid = self._string_count
            self._string_count += 1
            self._strings[text] = sid
            self._new_strings.append(text)
        return sid

    def frame_id(self, filename, name, qualname, line, column=-1):
        key = (filename, name, qualname, line, column)
        fid = self._frames.get(key)
        if fid is None:
            if len(self._frames) >= self.max_interned:
                self._frames.clear()
            fid = self._frame_count
            self._frame_count += 1
            self._frames[key] = fid
            files, names, qualnames, lines, columns = self._new_frames
            files.append(self.string_id(filename))
            names.append(self.string_id(name))
            qualnames.append(self.string_id(qualname))
            lines.append(line)
            columns.append(column)
        return fid

    def stack_id(self, frame_ids):
        """Intern a stack given as a tuple of frame ids, root (outermost) first."""
        sid = self._stacks.get(frame_ids)
        if sid is None:
            if len(self._stacks) >= self.max_interned:
                self._stacks.clear()
            sid = self._stack_count
            self._stack_count += 1
            self._stacks[frame_ids] = sid
            self._new_stacks_lengths.append(len(frame_ids))
            self._new_stacks_frames.extend(frame_ids)
        return sid

    # -- records -------------------------------------------------------------------------

    def write_header(self, header):
        """Write the HEADER chunk; must come first.  ``header`` holds the spec's header fields."""
        fields = dict(header)
        fields["format"] = list(FORMAT_VERSION)
        fields["codec"] = Codec.NAMES[self.codec]
        self._write(Kind.HEADER, fields, Codec.NONE)

    def process(self, **fields):
        """Queue a PROCESS record (pid, argv, python_version, executable, start_ns, end_ns, ...)."""
        self._records.append((Kind.PROCESS, fields))

    def thread(self, **fields):
        """Queue a THREAD record (pid, tid, py_thread_id, name, start_ns, end_ns)."""
        self._records.append((Kind.THREAD, fields))

    def sample(self, t, pid, tid, stack, cpu, rss, flags, syscall=0, wchan=0):
        """One sample; ``syscall`` and ``wchan`` are 1 + a ``string_id`` (0: none)."""
        columns = self._columns
        columns["t"].append(t)
        columns["pid"].append(pid)
        columns["tid"].append(tid)
        columns["stack"].append(stack)
        columns["cpu"].append(cpu)
        columns["rss"].append(rss)
        columns["flags"].append(flags)
        columns["syscall"].append(syscall)
        columns["wchan"].append(wchan)
        if len(columns["t"]) >= self.max_batch:
            self._cut()

    def samples(self, t, pid, rss, rows):
        """Samples at one moment of threads that have not run since their last ones: ``rows``
        is (tids, stacks, flags, syscalls, wchans), a column each; their CPU deltas are 0."""
        tids, stacks, flags, syscalls, wchans = rows
        count = len(tids)
        columns = self._columns
        columns["t"].extend([t] * count)
        columns["pid"].extend([pid] * count)
        columns["tid"].extend(tids)
        columns["stack"].extend(stacks)
        columns["cpu"].extend([0] * count)
        columns["rss"].extend([rss] * count)
        columns["flags"].extend(flags)
        columns["syscall"].extend(syscalls)
        columns["wchan"].extend(wchans)
        if len(columns["t"]) >= self.max_batch:
            self._cut()

    def maybe_flush(self, now_ns):
        """Start writing what is pending when the flush interval has passed since the last
        time; its samples are then encoded a slice at each ``work()``."""
        if self._last_flush_ns is None:
            self._last_flush_ns = now_ns
        elif now_ns - self._last_flush_ns >= self.flush_interval_ns:
            self._last_flush_ns = now_ns
            self._cut()

    def work(self):
        """Do one slice of the batch being encoded, if any: a sampler calls this between
        rounds, so that writing a batch never holds a round back more than a slice."""
        pending = self._pending
        if pending is not None:
            try:
                next(pending)
            except StopIteration:
                self._pending = None
            except BaseException:
                self._pending = None  # the batch is lost with the stream that failed it
                raise

    def flush(self):
        """Write everything pending, samples included, then flush the stream."""
        self._cut()
        self._finish_pending()

    def _cut(self):
        """Write the pending definitions and records, and start the batch of samples that
        uses them (the one before it finished first: chunks keep their order)."""
        self._finish_pending()
        if self._new_strings:
            self._write(Kind.STRINGS, {"first": self._string_count - len(self._new_strings),
                                       "values": self._new_strings})
            self._new_strings = []
        files, names, qualnames, lines, columns = self._new_frames
        if files:
            self._write(Kind.FRAMES, {"first": self._frame_count - len(files), "file": files,
                                      "name": names, "qualname": qualnames, "line": lines,
                                      "column": columns})
            self._new_frames = ([], [], [], [], [])
        if self._new_stacks_lengths:
            self._write(Kind.STACKS, {"first": self._stack_count - len(self._new_stacks_lengths),
                                      "lengths": self._new_stacks_lengths,
                                      "frames": self._new_stacks_frames})
            self._new_stacks_lengths = []
            self._new_stacks_frames = []
        for kind, payload in self._records:
            self._write(kind, payload)
        self._records = []
        if self._columns["t"]:
            batch, self._columns = self._columns, {name: [] for name in SAMPLE_COLUMNS}
            self._pending = self._samples_chunk(batch)
        else:
            self._stream.flush()

    def _finish_pending(self):
        while self._pending is not None:
            self.work()

    def _samples_chunk(self, batch):
        """Encode and write one SAMPLES chunk, yielding after each slice of the work."""
        count = len(batch["t"])
        encoded = {}
        for name, (dtype, transforms) in SAMPLE_COLUMNS.items():
            encoder = ColumnEncoder(dtype, transforms)
            values = batch[name]
            for start in range(0, count, WRITE_SLICE_ROWS):
                encoder.add(values[start:start + WRITE_SLICE_ROWS])
                yield
            encoded[name] = [dtype, transforms, encoder.encoded()]
        raw = msgpack.packb({"count": count, "columns": encoded}, use_bin_type=True)
        if self.codec == Codec.ZLIB:
            compressor, parts = zlib.compressobj(ZLIB_LEVEL), []
            for start in range(0, len(raw), WRITE_SLICE_BYTES):
                yield
                parts.append(compressor.compress(raw[start:start + WRITE_SLICE_BYTES]))
            parts.append(compressor.flush())
            payload = b"".join(parts)
        else:
            payload = raw
        data = frame_chunk(Kind.SAMPLES, self.codec, payload, len(raw))
        self._stream.write(data)
        self.bytes_written += len(data)
        self.samples_written += count
        self._stream.flush()

    def close(self, trailer):
        """Flush everything and end the recording with a TRAILER chunk."""
        self.flush()
        self._write(Kind.TRAILER, dict(trailer))
        self._stream.flush()

    def _write(self, kind, payload, codec=None):
        data = encode_chunk(kind, payload, self.codec if codec is None else codec)
        self._stream.write(data)
        self.bytes_written += len(data)


# --------------------------------------------------------------------------------------------
# Reading


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

    def __init__(self, stream, budget=None):
        self._stream = stream
        self._decoder = ChunkDecoder(budget)
        self.lost_bytes = 0
        self.torn = None
        self.unknown_chunks = 0
        self.end_offset = 0
        self.header = None
        self._saw_trailer = False

    @property
    def version(self):
        return self._decoder.version

    @property
    def budget(self):
        return self._decoder.budget

    @property
    def skipped(self):
        return self._decoder.skipped

    def chunks(self):
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

    def _in_order(self, chunks):
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

    def __init__(self):
        self.version = None
        self.header = {}
        self.trailer = None
        self.strings = []
        self.frames = {"file": [], "name": [], "qualname": [], "line": [], "column": []}
        self.stacks = []            # tuples of frame ids, root first
        self.processes = {}         # pid -> merged PROCESS fields
        self.threads = {}           # (pid, tid) -> merged THREAD fields
        self.samples = {}           # column name -> numpy array
        self.sample_count = 0
        self.lost_bytes = 0
        self.file_bytes = 0
        self.lost = []
        self.unknown_chunks = 0
        self.chunk_count = 0


def _expect(condition, reason, offset):
    if not condition:
        raise CorruptRecording(reason, offset)


#: Sample columns whose values have a range of their own (formats/spy.md, SAMPLES):
#: name -> (low, high exclusive).  ``stack`` is checked against the stacks defined so far.
_COLUMN_RANGES = {"t": (0, MAX_TIME_NS), "cpu": (-(1 << 53) + 1, 1 << 53), "rss": (0, 1 << 53),
                  "flags": (0, (SampleFlag.IDLE | SampleFlag.GIL | SampleFlag.TORN) + 1)}


def _sample_columns(payload, offset, data, budget):
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


def read_recording(stream, max_memory=None):
    """Read a whole recording into ``RecordingData``, validating every id, length and field.

    ``max_memory`` is the reader's budget in bytes (default: ``spylimits.default_max_memory``);
    a file that needs more is refused as corrupt before it is allocated.
    """
    import numpy as np

    data = RecordingData()
    budget = ReadBudget(max_memory)
    reader = SpyReader(stream, budget)
    column_parts = {}
    for chunk in reader.chunks():
        payload, offset, kind = chunk.payload, chunk.offset, chunk.kind
        data.chunk_count += 1
        if kind == Kind.HEADER:
            data.header = payload
        elif kind == Kind.STRINGS:
            _expect(payload["first"] == len(data.strings), "string ids out of sequence", offset)
            data.strings.extend(payload["values"])
        elif kind == Kind.FRAMES:
            _expect(payload["first"] == len(data.frames["file"]), "frame ids out of sequence", offset)
            n = len(payload["file"])
            for field in ("file", "name", "qualname", "line", "column"):
                values = payload[field]
                _expect(len(values) == n, "FRAMES columns differ in length", offset)
                if field in ("file", "name", "qualname") and values:
                    _expect(max(values) < len(data.strings),
                            "FRAMES %s refers to a string that is not defined yet" % field, offset)
            for field in data.frames:
                data.frames[field].extend(payload[field])
        elif kind == Kind.STACKS:
            _expect(payload["first"] == len(data.stacks), "stack ids out of sequence", offset)
            lengths, frames = payload["lengths"], payload["frames"]
            _expect(sum(lengths) == len(frames), "STACKS lengths do not add up", offset)
            _expect(not frames or max(frames) < len(data.frames["file"]),
                    "STACKS frames refers to a frame that is not defined yet", offset)
            position = 0
            for n in lengths:
                data.stacks.append(tuple(frames[position:position + n]))
                position += n
        elif kind in (Kind.PROCESS, Kind.THREAD):
            budget.charge(RECORD_COST + chunk.size, "a %s record" % Kind.NAMES[kind], offset)
            if kind == Kind.PROCESS:
                data.processes.setdefault(payload["pid"], {}).update(payload)
            else:
                data.threads.setdefault((payload["pid"], payload["tid"]), {}).update(payload)
        elif kind == Kind.SAMPLES:
            for name, values in _sample_columns(payload, offset, data, budget).items():
                column_parts.setdefault(name, []).append((data.sample_count, values))
            data.sample_count += payload["count"]
        elif kind == Kind.TRAILER:
            data.trailer = payload
    data.version = reader.version
    data.lost_bytes = reader.lost_bytes
    data.file_bytes = reader.end_offset + reader.lost_bytes
    data.unknown_chunks = reader.unknown_chunks
    data.lost = lost_data(reader, data.trailer is not None)
    total = data.sample_count
    for name, (dtype, _transforms) in SAMPLE_COLUMNS.items():
        parts = column_parts.pop(name, [])
        if sum(len(values) for _, values in parts) == total:
            data.samples[name] = (np.concatenate([v for _, v in parts]) if parts
                                  else np.zeros(0, dtype="<" + dtype))
        else:   # an optional column missing from some chunks: zeros there
            full = np.zeros(total, dtype="<" + dtype)
            for start, values in parts:
                full[start:start + len(values)] = values
            data.samples[name] = full
    return data


def lost_data(reader, has_trailer):
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


def open_source(path):
    """Open a recording path for reading; ``-`` is standard input."""
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")


# --------------------------------------------------------------------------------------------
# Human-readable dump (for golden files and debugging)

#: Sample values written per slice, so a large chunk never becomes one huge line in memory.
_DUMP_SLICE = 65536


def dump(stream, out, max_memory=None):
    """Write every chunk of a recording as text lines, one chunk per line group.

    Returns the reader's ``lost_data`` sentences (a torn tail, no trailer), which the caller
    reports.  Chunks are checked as ``read_recording`` checks them; nothing is kept between
    chunks, so the budget bounds each chunk, not the file.
    """
    reader = SpyReader(stream, ReadBudget(max_memory))
    stacks = 0
    has_trailer = False
    for chunk in reader.chunks():
        name = Kind.NAMES[chunk.kind]
        payload = chunk.payload
        if chunk.kind == Kind.SAMPLES:
            stand_in = RecordingData()
            stand_in.stacks = range(stacks)
            columns = _sample_columns(payload, chunk.offset, stand_in, reader.budget)
            out.write("@%d %s count=%s\n" % (chunk.offset, name, payload["count"]))
            for col in sorted(columns):
                out.write("  %s %s:" % (col, payload["columns"][col][0]))
                values = columns[col]
                for start in range(0, len(values), _DUMP_SLICE):
                    out.write(" " + " ".join(map(str, values[start:start + _DUMP_SLICE].tolist())))
                out.write("\n")
        else:
            if chunk.kind == Kind.STACKS:
                stacks += len(payload["lengths"])
            has_trailer = has_trailer or chunk.kind == Kind.TRAILER
            out.write("@%d %s %s\n" % (chunk.offset, name, _stable_repr(payload)))
        reader.budget.forget()
    out.write("version %d.%d, lost %d bytes, skipped %d unknown chunks\n"
              % (reader.version + (reader.lost_bytes, reader.unknown_chunks)))
    return lost_data(reader, has_trailer)


def _stable_repr(obj):
    if isinstance(obj, dict):
        return "{" + ", ".join("%r: %s" % (k, _stable_repr(obj[k])) for k in sorted(obj)) + "}"
    if isinstance(obj, list):
        return "[" + ", ".join(_stable_repr(v) for v in obj) + "]"
    return repr(obj)
