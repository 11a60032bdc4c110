"""The .spy recording format: the one codec shared by the recorder and the analyser.

``formats/spy.md`` is the normative specification; this package implements it and is the only
place that knows a chunk kind, a field name or a column encoding.  ``spyrec`` writes with
``SpyWriter``; ``spyanalyze`` reads with ``SpyReader`` / ``read_recording``.  It imports
neither of them (the arrows read recorder -> format <- analyser), so the two cannot drift apart
and an analyst's install needs no recorder code.

Layout in one picture (all integers little-endian)::

    preamble   MAGIC (8 bytes)  major u8  minor u8  reserved u16 = 0
    chunk*     payload_length u32 | kind u8 | codec u8 | flags u16 | raw_length u32 | crc32 u32
               payload (payload_length bytes; raw_length bytes once decompressed; msgpack)

The CRC covers the first 12 header bytes and the payload, so a torn or flipped chunk is caught
before any of it is decoded.  A file is a stream: the writer never seeks, and a reader that hits
the end of the data inside a chunk stops at the last complete chunk and reports what was lost.

Untrusted input: payloads are msgpack (no code execution, extension types are refused), every
length and count is charged to a memory budget before anything of that size is allocated
(``limits``), decompression is capped at the declared raw length, and every field is checked
against the spec as it is decoded (``records``).

Modules: ``chunks`` (framing), ``columns`` (sample columns), ``records`` (payload checks),
``limits`` (the reader's budget), ``writer``, ``interning``, ``reader``, ``dump`` (as text),
``text`` (names made safe to print), ``errors``.
"""

from spyformat.chunks import FORMAT_VERSION, Codec, Kind
from spyformat.columns import SampleFlag
from spyformat.dump import dump
from spyformat.errors import CorruptRecording, IncompatibleRecording, SpyError
from spyformat.interning import Interner
from spyformat.records import FREED_FRAME, GC_FRAME, KERNEL_FILE, TASK_FILE, FrameKind
from spyformat.reader import RecordingData, SpyReader, lost_data, open_source, read_recording
from spyformat.writer import SpyWriter

__all__ = ["FORMAT_VERSION", "FREED_FRAME", "GC_FRAME", "KERNEL_FILE", "TASK_FILE", "Codec",
           "CorruptRecording", "FrameKind",
           "IncompatibleRecording", "Interner", "Kind",
           "RecordingData", "SampleFlag", "SpyError", "SpyReader", "SpyWriter", "dump", "lost_data",
           "open_source", "read_recording"]
