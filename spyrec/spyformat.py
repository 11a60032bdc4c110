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
length is checked against a fixed bound before anything is allocated, and decompression is
capped at the declared raw length.
"""

import array
import struct
import sys
import zlib

import msgpack

from spyrec.errors import CorruptRecording, IncompatibleRecording

MAGIC = b"\x89SPY\r\n\x1a\n"
FORMAT_VERSION = (1, 0)
PREAMBLE = struct.Struct("<8sBBH")
CHUNK_HEADER = struct.Struct("<IBBHII")
#: The CRC covers the header up to (not including) the crc field, then the payload.
CRC_COVERED_HEADER = 12

#: A chunk larger than this is refused as corrupt: no legitimate writer produces one.
MAX_PAYLOAD_BYTES = 64 << 20
MAX_RAW_BYTES = 256 << 20


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

#: The sample columns written by format 1.0: name -> (dtype, transforms).  Readers ignore
#: columns they do not know and treat a missing optional column as zeros.
SAMPLE_COLUMNS = {
    "t": ("i8", Transform.DELTA | Transform.SHUFFLE),      # ns since the header's monotonic origin
    "pid": ("u4", Transform.SHUFFLE),                        # process id
    "tid": ("u4", Transform.SHUFFLE),                        # native (kernel) thread id
    "stack": ("u4", Transform.SHUFFLE),                      # stack id
    "cpu": ("i8", Transform.SHUFFLE),                        # ns of CPU the thread used since its previous sample
    "rss": ("i8", Transform.DELTA | Transform.SHUFFLE),     # process resident set size, bytes
    "flags": ("u1", 0),                                      # SampleFlag bits
}
REQUIRED_SAMPLE_COLUMNS = ("t", "tid", "stack")


def _assert_little_endian():
    if sys.byteorder != "little":  # pragma: no cover - every platform we record on is little-endian
        raise RuntimeError("the .spy codec assumes a little-endian host")


_assert_little_endian()


# --------------------------------------------------------------------------------------------
# Column encoding


def encode_column(values, dtype, transforms):
    """Encode a sequence of ints as the bytes of one sample column."""
    typecode, size = DTYPES[dtype]
    if transforms & Transform.DELTA:
        previous = 0
        deltas = []
        for value in values:
            deltas.append(value - previous)
            previous = value
        values = deltas
    data = array.array(typecode, values).tobytes()
    if transforms & Transform.SHUFFLE and size > 1:
        data = b"".join(data[plane::size] for plane in range(size))
    return data


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


def encode_chunk(kind, obj, codec=Codec.ZLIB, level=6):
    """Frame one record: msgpack, compress, prefix the header with its CRC."""
    raw = msgpack.packb(obj, use_bin_type=True)
    if codec == Codec.ZLIB:
        payload = zlib.compress(raw, level)
    elif codec == Codec.NONE:
        payload = raw
    else:
        raise ValueError("unknown codec %r" % codec)
    head = CHUNK_HEADER.pack(len(payload), kind, codec, 0, len(raw), 0)[:CRC_COVERED_HEADER]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def _reject_ext(code, data):
    raise CorruptRecording("msgpack extension type %d is not allowed in a recording" % code)


def decode_payload(codec, payload, raw_length, offset):
    """Decompress (bounded by the declared raw length) and unpack one chunk payload."""
    if codec == Codec.ZLIB:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, raw_length + 1)
        except zlib.error as exc:
            raise CorruptRecording("chunk does not decompress (%s)" % exc, offset)
        if len(raw) != raw_length or inflater.unconsumed_tail:
            raise CorruptRecording("chunk decompresses to more or less than its declared size", offset)
    elif codec == Codec.NONE:
        raw = payload
        if len(raw) != raw_length:
            raise CorruptRecording("uncompressed chunk size does not match its header", offset)
    else:
        raise CorruptRecording("unknown compression codec %d" % codec, offset)
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except CorruptRecording as exc:
        raise CorruptRecording(exc.reason, offset)
    except Exception as exc:  # msgpack raises several unrelated types for bad data
        raise CorruptRecording("chunk payload is not valid msgpack (%s)" % type(exc).__name__, offset)


class Chunk:
    """One framed record as read from a file: its kind, where it starts, and its decoded payload."""

    __slots__ = ("kind", "offset", "payload", "size")

    def __init__(self, kind, offset, payload, size):
        self.kind = kind
        self.offset = offset
        self.payload = payload
        self.size = size


class ChunkDecoder:
    """Sans-IO decoder: feed it bytes as they arrive, take complete chunks out.

    File, pipe and follow modes are thin loops around it.  ``pending`` after the last feed is
    the torn tail of a recording that was cut off mid-chunk.
    """

    def __init__(self):
        self._buffer = bytearray()
        self._consumed = 0          # absolute file offset of _buffer[0]
        self.version = None

    @property
    def pending(self):
        return len(self._buffer)

    @property
    def offset(self):
        return self._consumed

    def feed(self, data):
        self._buffer += data

    def chunks(self):
        """Yield every complete chunk in the buffer; leave a partial one for the next feed."""
        if self.version is None:
            if len(self._buffer) < PREAMBLE.size:
                if not MAGIC.startswith(bytes(self._buffer[:len(MAGIC)])):
                    raise CorruptRecording("not a .spy recording (bad magic)", 0)
                return
            magic, major, minor, _reserved = PREAMBLE.unpack_from(self._buffer)
            if magic != MAGIC:
                raise CorruptRecording("not a .spy recording (bad magic)", 0)
            if major != FORMAT_VERSION[0]:
                raise IncompatibleRecording(
                    "recording format %d.%d cannot be read by this version (reads %d.x); "
                    "use a spyanalyze that supports format %d" % (major, minor, FORMAT_VERSION[0], major))
            self.version = (major, minor)
            self._advance(PREAMBLE.size)
        while len(self._buffer) >= CHUNK_HEADER.size:
            length, kind, codec, _flags, raw_length, crc = CHUNK_HEADER.unpack_from(self._buffer)
            if length > MAX_PAYLOAD_BYTES or raw_length > MAX_RAW_BYTES:
                raise CorruptRecording("chunk claims %d bytes (%d raw), over the %d-byte bound"
                                       % (length, raw_length, MAX_PAYLOAD_BYTES), self._consumed)
            end = CHUNK_HEADER.size + length
            if len(self._buffer) < end:
                return
            view = memoryview(self._buffer)
            payload = bytes(view[CHUNK_HEADER.size:end])
            actual = zlib.crc32(payload, zlib.crc32(view[:CRC_COVERED_HEADER]))
            view.release()
            offset = self._consumed
            if actual != crc:
                raise CorruptRecording("checksum mismatch in chunk of kind %d" % kind, offset)
            self._advance(end)
            yield Chunk(kind, offset, decode_payload(codec, payload, raw_length, offset), end)

    def _advance(self, count):
        del self._buffer[:count]
        self._consumed += count


# --------------------------------------------------------------------------------------------
# Writing


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

    def sample(self, t, pid, tid, stack, cpu, rss, flags):
        columns = self._columns
        columns["t"].append(t)
        columns["pid"].append(pid)
        columns["tid"].append(tid)
        columns["stack"].append(stack)
        columns["cpu"].append(cpu)
        columns["rss"].append(rss)
        columns["flags"].append(flags)
        if len(columns["t"]) >= self.max_batch:
            self.flush()

    def maybe_flush(self, now_ns):
        """Flush when the flush interval has passed since the last one."""
        if self._last_flush_ns is None:
            self._last_flush_ns = now_ns
        elif now_ns - self._last_flush_ns >= self.flush_interval_ns:
            self._last_flush_ns = now_ns
            self.flush()

    def flush(self):
        """Write pending definitions, records and samples as chunks, then flush the stream."""
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
        count = len(self._columns["t"])
        if count:
            encoded = {}
            for name, (dtype, transforms) in SAMPLE_COLUMNS.items():
                encoded[name] = [dtype, transforms, encode_column(self._columns[name], dtype, transforms)]
                self._columns[name] = []
            self._write(Kind.SAMPLES, {"count": count, "columns": encoded})
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

    After iteration, ``lost_bytes`` is the size of a torn tail (a recording cut off while a
    chunk was being written) and ``unknown_chunks`` counts chunks of kinds this reader does not
    know, which it skipped.  A damaged chunk in the middle raises ``CorruptRecording`` naming
    its offset.
    """

    READ_SIZE = 1 << 20

    def __init__(self, stream):
        self._stream = stream
        self._decoder = ChunkDecoder()
        self.lost_bytes = 0
        self.unknown_chunks = 0
        self.end_offset = 0

    @property
    def version(self):
        return self._decoder.version

    def chunks(self):
        decoder = self._decoder
        saw_any = False
        while True:
            data = self._stream.read(self.READ_SIZE)
            if not data:
                break
            saw_any = True
            decoder.feed(data)
            for chunk in decoder.chunks():
                if chunk.kind not in Kind.NAMES:
                    self.unknown_chunks += 1
                    continue
                yield chunk
        if not saw_any:
            raise CorruptRecording("empty file: not a .spy recording", 0)
        if decoder.version is None:
            raise CorruptRecording("file too short for a .spy preamble", 0)
        self.lost_bytes = decoder.pending
        self.end_offset = decoder.offset


class RecordingData:
    """Everything a recording holds, as plain Python lists plus numpy sample columns.

    This is the neutral, dependency-light result of reading; spyanalyze builds its DataFrames
    from it.  Ids index directly into ``strings``, ``frames`` and ``stacks``.
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
        self.unknown_chunks = 0
        self.chunk_count = 0


def _expect(condition, reason, offset):
    if not condition:
        raise CorruptRecording(reason, offset)


def _int_list(values, name, offset, bound=None):
    _expect(isinstance(values, list), "%s is not a list" % name, offset)
    for value in values:
        _expect(type(value) is int, "%s holds a non-integer" % name, offset)
    if bound is not None and values:
        _expect(0 <= min(values) and max(values) < bound,
                "%s refers to an id that is not defined yet" % name, offset)
    return values


def read_recording(stream):
    """Read a whole recording into ``RecordingData``, validating every id and length."""
    import numpy as np

    data = RecordingData()
    reader = SpyReader(stream)
    column_parts = {}
    for chunk in reader.chunks():
        payload, offset, kind = chunk.payload, chunk.offset, chunk.kind
        data.chunk_count += 1
        _expect(isinstance(payload, dict), "%s payload is not a map" % Kind.NAMES[kind], offset)
        if kind == Kind.HEADER:
            data.header = payload
        elif kind == Kind.STRINGS:
            _expect(payload.get("first") == len(data.strings), "string ids out of sequence", offset)
            values = payload.get("values")
            _expect(isinstance(values, list) and all(isinstance(v, str) for v in values),
                    "STRINGS values are not strings", offset)
            data.strings.extend(values)
        elif kind == Kind.FRAMES:
            _expect(payload.get("first") == len(data.frames["file"]), "frame ids out of sequence", offset)
            n = len(payload.get("file") or [])
            for field in ("file", "name", "qualname", "line", "column"):
                values = _int_list(payload.get(field), "FRAMES " + field, offset,
                                   len(data.strings) if field in ("file", "name", "qualname") else None)
                _expect(len(values) == n, "FRAMES columns differ in length", offset)
                data.frames[field].extend(values)
        elif kind == Kind.STACKS:
            _expect(payload.get("first") == len(data.stacks), "stack ids out of sequence", offset)
            lengths = _int_list(payload.get("lengths"), "STACKS lengths", offset)
            frames = _int_list(payload.get("frames"), "STACKS frames", offset, len(data.frames["file"]))
            _expect(all(n >= 0 for n in lengths) and sum(lengths) == len(frames),
                    "STACKS lengths do not add up", offset)
            position = 0
            for n in lengths:
                data.stacks.append(tuple(frames[position:position + n]))
                position += n
        elif kind == Kind.PROCESS:
            _expect(type(payload.get("pid")) is int, "PROCESS without pid", offset)
            data.processes.setdefault(payload["pid"], {}).update(payload)
        elif kind == Kind.THREAD:
            _expect(type(payload.get("pid")) is int and type(payload.get("tid")) is int,
                    "THREAD without pid/tid", offset)
            data.threads.setdefault((payload["pid"], payload["tid"]), {}).update(payload)
        elif kind == Kind.SAMPLES:
            count = payload.get("count")
            columns = payload.get("columns")
            _expect(type(count) is int and 0 <= count <= MAX_RAW_BYTES, "bad sample count", offset)
            _expect(isinstance(columns, dict), "SAMPLES without columns", offset)
            for name in REQUIRED_SAMPLE_COLUMNS:
                _expect(name in columns, "SAMPLES chunk lacks the %r column" % name, offset)
            for name, spec in columns.items():
                _expect(isinstance(spec, list) and len(spec) == 3 and isinstance(spec[2], bytes),
                        "column %r is malformed" % name, offset)
                dtype, transforms, raw = spec
                _expect(dtype in DTYPES and type(transforms) is int, "column %r has a bad type" % name, offset)
                try:
                    values = decode_column(raw, dtype, transforms, count)
                except CorruptRecording as exc:
                    raise CorruptRecording("column %r: %s" % (name, exc.reason), offset)
                column_parts.setdefault(name, []).append((data.sample_count, values))
                if name == "stack" and count:
                    _expect(int(values.max()) < len(data.stacks),
                            "a sample refers to an undefined stack", offset)
            data.sample_count += count
        elif kind == Kind.TRAILER:
            data.trailer = payload
    data.version = reader.version
    data.lost_bytes = reader.lost_bytes
    data.unknown_chunks = reader.unknown_chunks
    total = data.sample_count
    for name in set(SAMPLE_COLUMNS) | set(column_parts):
        parts = column_parts.get(name, [])
        dtype = SAMPLE_COLUMNS[name][0] if name in SAMPLE_COLUMNS else parts[0][1].dtype.str[1:]
        if sum(len(values) for _, values in parts) == total:
            data.samples[name] = (np.concatenate([v for _, v in parts]) if parts
                                  else np.zeros(0, dtype="<" + dtype))
        else:   # an optional column missing from some chunks: zeros there
            full = np.zeros(total, dtype="<" + dtype)
            for start, values in parts:
                full[start:start + len(values)] = values
            data.samples[name] = full
    return data


def open_source(path):
    """Open a recording path for reading; ``-`` is standard input."""
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")


# --------------------------------------------------------------------------------------------
# Human-readable dump (for golden files and debugging)


def dump(stream, out):
    """Write every chunk of a recording as text lines, one chunk per line group."""
    reader = SpyReader(stream)
    for chunk in reader.chunks():
        name = Kind.NAMES[chunk.kind]
        payload = chunk.payload
        if chunk.kind == Kind.SAMPLES and isinstance(payload, dict):
            out.write("@%d %s count=%s\n" % (chunk.offset, name, payload.get("count")))
            for col, (dtype, transforms, raw) in sorted(payload.get("columns", {}).items()):
                values = decode_column(raw, dtype, transforms, payload["count"])
                out.write("  %s %s: %s\n" % (col, dtype, " ".join(map(str, values.tolist()))))
        else:
            out.write("@%d %s %s\n" % (chunk.offset, name, _stable_repr(payload)))
    out.write("version %d.%d, lost %d bytes, skipped %d unknown chunks\n"
              % (reader.version + (reader.lost_bytes, reader.unknown_chunks)))


def _stable_repr(obj):
    if isinstance(obj, dict):
        return "{" + ", ".join("%r: %s" % (k, _stable_repr(obj[k])) for k in sorted(obj)) + "}"
    if isinstance(obj, list):
        return "[" + ", ".join(_stable_repr(v) for v in obj) + "]"
    return repr(obj)
