"""Chunk framing: the preamble, each chunk's header and CRC, compression, and the sans-IO decoder
that takes complete chunks out of bytes as they arrive (formats/spy.md, "Layout")."""

import struct
import zlib

import msgpack

from spyformat.errors import CorruptRecording, IncompatibleRecording
from spyformat.limits import MAX_PAYLOAD_BYTES, MAX_RAW_BYTES, MAX_RECORD_RAW_BYTES, ReadBudget
from spyformat.records import decode_record

MAGIC = b"\x89SPY\r\n\x1a\n"
FORMAT_VERSION = (1, 4)
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
    chunk is charged to ``budget`` (a ``limits.ReadBudget``) before it is decompressed.
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
