"""A recording as text, chunk by chunk: for golden files, and for a look inside a damaged file."""

from typing import BinaryIO, List, Optional, TextIO

from spyformat.chunks import Kind
from spyformat.limits import ReadBudget
from spyformat.reader import RecordingData, SpyReader, lost_data, sample_columns

#: Sample values written per slice, so a large chunk never becomes one huge line in memory.
_DUMP_SLICE = 65536


def dump(stream: BinaryIO, out: TextIO, max_memory: Optional[int] = None) -> List[str]:
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
            stand_in.stacks = range(stacks)  # type: ignore[assignment]  # only its length is read
            columns = sample_columns(payload, chunk.offset, stand_in, reader.budget)
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
    # (the version is known once the chunks are read: chunks() raises otherwise)
    out.write("version %d.%d, lost %d bytes, skipped %d unknown chunks\n"
              % (reader.version + (reader.lost_bytes, reader.unknown_chunks)))  # type: ignore[operator]
    return lost_data(reader, has_trailer)


def _stable_repr(obj):
    if isinstance(obj, dict):
        return "{" + ", ".join("%r: %s" % (k, _stable_repr(obj[k])) for k in sorted(obj)) + "}"
    if isinstance(obj, list):
        return "[" + ", ".join(_stable_repr(v) for v in obj) + "]"
    return repr(obj)
