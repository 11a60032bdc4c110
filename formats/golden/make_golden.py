"""Write the golden .spy files and their text dumps, the invalid files a reader must refuse
(one per rule of formats/spy.md), and the crafted amplification files of formats/golden/amplify.

Run only when the format changes on purpose (a new minor version adds new golden files; the
old ones stay, so that old recordings keep being read):

    python formats/golden/make_golden.py

The tests never create a missing golden file: they fail instead.  ``records`` and ``encode``
turn a file into editable records and back with valid checksums; the structure-aware fuzzer
(tests/recordfuzz.py) uses them too.
"""

import io
import os
import struct
import zlib

import msgpack

from spyformat import Codec, Interner, Kind, SampleFlag, SpyWriter, dump
from spyformat.chunks import CHUNK_HEADER, CRC_COVERED_HEADER, MAGIC, PREAMBLE, encode_chunk, encode_preamble
from spyformat.columns import DTYPES, SAMPLE_COLUMNS, encode_column

HERE = os.path.dirname(os.path.abspath(__file__))


def small_recording(with_trailer=True, unknown_kind=False):
    """Two threads of one process, unicode names, a recursion, and every sample column."""
    out = io.BytesIO()
    writer = SpyWriter(out)
    interned = Interner(writer)
    writer.write_header({
        "recorder": "spyrec 0.1.0", "start_wall_ns": 1_764_000_000_000_000_000,
        "start_mono_ns": 5_000_000_000, "interval_ns": 10_000_000, "host": "golden",
        "pid": 4242, "argv": ["python3", "app.py"], "cwd": "/srv/app",
        "python_version": "3.12.1", "python_executable": "/usr/bin/python3.12", "mode": "launch",
    })
    writer.process(pid=4242, argv=["python3", "app.py"], python_version="3.12.1",
                   executable="/usr/bin/python3.12", start_ns=0)
    writer.thread(pid=4242, tid=4242, py_thread_id=140000000000001, name="MainThread", start_ns=0)
    writer.thread(pid=4242, tid=4243, py_thread_id=140000000000002, name="wörker-関", start_ns=0)
    main = interned.frame_id("/srv/app/app.py", "<module>", "<module>", 30, 0)
    run = interned.frame_id("/srv/app/app.py", "run", "Server.run", 12, 8)
    fib = interned.frame_id("/srv/app/app.py", "fib", "fib", 5, 15)
    cafe = interned.frame_id("/srv/app/café.py", "calcül", "calcül", 70001, -1)
    stack_main = interned.stack_id((main, run))
    stack_fib = interned.stack_id((main, fib, fib, fib))
    stack_worker = interned.stack_id((cafe,))
    rss = 20_000_000
    for i in range(6):
        t = i * 10_000_000
        writer.sample(t, 4242, 4242, stack_main if i % 2 else stack_fib, 9_000_000, rss + i * 4096,
                      SampleFlag.GIL)
        writer.sample(t + 50_000, 4242, 4243, stack_worker, 0, rss + i * 4096, SampleFlag.IDLE)
    writer.flush()
    if unknown_kind:
        out.write(encode_chunk(200, {"future": "a kind this reader does not know"}))
    writer.thread(pid=4242, tid=4243, end_ns=60_000_000)
    writer.sample(60_000_000, 4242, 4242, stack_main, 10_000_000, rss, SampleFlag.GIL)
    if with_trailer:
        writer.close({"end_ns": 70_000_000, "duration_ns": 70_000_000, "ticks": 7, "samples": 13,
                      "errors": 0, "late": 0, "sampling_cost_ns": [20_000, 30_000, 50_000],
                      "stop_reason": "target exited"})
    else:
        writer.flush()
    return out.getvalue()


class Raw(bytes):
    """A payload given as msgpack bytes as they are (what a dict cannot hold: a key twice)."""


def records(data):
    """A file's chunks as editable ``[kind, payload, codec, flags]`` lists (no checks: for
    files we made)."""
    out = []
    position = PREAMBLE.size
    while position + CHUNK_HEADER.size <= len(data):
        length, kind, codec, flags, raw_length, _crc = CHUNK_HEADER.unpack_from(data, position)
        end = position + CHUNK_HEADER.size + length
        if end > len(data):
            break                                   # a torn tail
        payload = data[position + CHUNK_HEADER.size:end]
        raw = zlib.decompress(payload) if codec == Codec.ZLIB else payload
        out.append([kind, msgpack.unpackb(raw, raw=False, strict_map_key=False), codec, flags])
        position += CHUNK_HEADER.size + length
    return out


def chunk(kind, payload, codec=Codec.ZLIB, flags=0):
    """One chunk with a valid CRC, whatever its header fields and payload say."""
    raw = payload if isinstance(payload, Raw) else msgpack.packb(payload, use_bin_type=True)
    body = zlib.compress(raw, 9) if codec == Codec.ZLIB else raw
    head = CHUNK_HEADER.pack(len(body), kind, codec, flags, len(raw), 0)
    head = head[:CRC_COVERED_HEADER]
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


def encode(chunks, preamble=None):
    return (preamble or encode_preamble()) + b"".join(chunk(*c) for c in chunks)


def column(name, values, dtype=None, transforms=None):
    """A SAMPLES column triple, by default as the spec writes ``name``."""
    spec_dtype, spec_transforms = SAMPLE_COLUMNS[name]
    dtype = dtype or spec_dtype
    transforms = spec_transforms if transforms is None else transforms
    return [dtype, transforms, encode_column(values, dtype, transforms & 3)]


def edited(base, edit):
    """The records of ``base`` after ``edit(records)`` changed them in place, encoded again."""
    chunks = records(base)
    edit(chunks)
    return encode(chunks, preamble=base[:PREAMBLE.size])


def _set(index, key, value):
    def edit(chunks):
        chunks[index][1][key] = value
    return edit


def _set_column(index, name, triple):
    def edit(chunks):
        chunks[index][1]["columns"][name] = triple
    return edit


# The records of complete.spy, by position.
HEADER, STRINGS, FRAMES, STACKS, PROCESS, THREAD, SAMPLES, TRAILER = 0, 1, 2, 3, 4, 5, 7, 10

#: One file per rule of the spec a reader enforces: name -> an edit of complete.spy's records.
#: tests/test_format.py holds the message each must give.
INVALID_EDITS = {
    "two-headers": lambda c: c.insert(1, list(c[HEADER])),
    "header-not-first": lambda c: c.insert(0, c.pop(STRINGS)),
    "chunk-after-trailer": lambda c: c.append(list(c[PROCESS])),
    "compressed-header": lambda c: c[HEADER].__setitem__(2, Codec.ZLIB),
    "header-format-differs": _set(HEADER, "format", [1, 7]),
    "reserved-chunk-flags": lambda c: c[PROCESS].__setitem__(3, 1),
    "negative-string-id": _set(STRINGS, "first", -1),
    "negative-frame-ref": _set(STACKS, "frames", [0, 1, 0, 2, 2, 2, -1]),
    "undefined-frame-ref": _set(STACKS, "frames", [0, 1, 0, 2, 2, 2, 9]),
    "stack-lengths-differ": _set(STACKS, "lengths", [2, 4, 2]),
    "stack-too-deep": _set(STACKS, "lengths", [2, 4, 1 << 17]),
    "frame-line-above-int64": _set(FRAMES, "line", [30, 12, 5, (1 << 64) - 1]),
    "frame-columns-differ": _set(FRAMES, "line", [30, 12, 5]),
    "header-cwd-not-a-string": _set(HEADER, "cwd", 5),
    "header-start-wall-not-an-int": _set(HEADER, "start_wall_ns", "yesterday"),
    "header-interval-zero": _set(HEADER, "interval_ns", 0),
    "header-argv-not-a-list": _set(HEADER, "argv", "python3 app.py"),
    "header-float-pid": _set(HEADER, "pid", 4242.0),
    "thread-name-not-a-string": _set(THREAD, "name", 42),
    "thread-negative-start": _set(THREAD, "start_ns", -1),
    "process-without-pid": lambda c: c[PROCESS][1].pop("pid"),
    "trailer-negative-samples": _set(TRAILER, "samples", -13),
    "trailer-cost-not-three": _set(TRAILER, "sampling_cost_ns", [1, 2]),
    "payload-not-a-map": lambda c: c[TRAILER].__setitem__(1, [1, 2, 3]),
    "key-twice": lambda c: c[TRAILER].__setitem__(1, Raw(b"\x82\xa6end_ns\x01\xa6end_ns\x02")),
    "bytes-after-the-map": lambda c: c[TRAILER].__setitem__(1, Raw(msgpack.packb({"ticks": 1}) + b"\x00")),
    "extension-type": _set(PROCESS, "executable", msgpack.ExtType(1, b"exec")),
    "samples-without-tid": lambda c: c[SAMPLES][1]["columns"].pop("tid"),
    "sample-count-huge": _set(SAMPLES, "count", 1 << 62),
    "sample-column-short": _set_column(SAMPLES, "cpu", column("cpu", [0] * 11)),
    "sample-column-not-a-triple": _set_column(SAMPLES, "cpu", ["i8", 2]),
    "sample-flags-reserved-bits": _set_column(SAMPLES, "flags", column("flags", [0x80] * 12)),
    "sample-flags-wide-dtype": _set_column(SAMPLES, "flags", column("flags", [0x102] * 12, "u8")),
    "sample-stack-negative": _set_column(SAMPLES, "stack", column("stack", [-1] * 12, "i8")),
    "sample-stack-undefined": _set_column(SAMPLES, "stack", column("stack", [3] * 12)),
    "sample-syscall-undefined": _set_column(SAMPLES, "syscall", column("syscall", [999] * 12)),
    "sample-time-negative": _set_column(SAMPLES, "t", column("t", [-5] * 12)),
    "sample-time-out-of-range": _set_column(SAMPLES, "t", column("t", [0] * 11 + [1 << 62])),
    "sample-unknown-transform": _set_column(SAMPLES, "pid", column("pid", [4242] * 12, transforms=4 | 2)),
}


def invalid_files(complete):
    files = {name: edited(complete, edit) for name, edit in INVALID_EDITS.items()}
    files["reserved-preamble"] = PREAMBLE.pack(MAGIC, 1, 0, 1) + complete[12:]
    return files


# ---------------------------------------------------------------------------------------------
# Amplification: small files that ask a reader for far more memory than they hold.  Each must be
# refused in one line, with the reader's memory near what it was before (tests/test_memory_bounds.py).

def _header_chunks(complete):
    return records(complete)[:STACKS + 1]      # HEADER, STRINGS, FRAMES, STACKS: 3 stacks defined


def amplification_files(complete):
    head = _header_chunks(complete)
    count = (60 << 20) // 37                     # 60 MiB of raw columns, ~60 KiB compressed
    samples = {"count": count, "columns": {name: [dtype, 0, bytes(count * DTYPES[dtype][1])]
                                           for name, (dtype, _) in SAMPLE_COLUMNS.items()}}
    return {
        # Four chunks of 1.7 million samples each, all zero: 240 MiB of columns.
        "many-samples": encode(head + [[Kind.SAMPLES, samples, Codec.ZLIB, 0]] * 4),
        # 60 million one-character strings: 3 GiB as Python strings.
        "many-strings": encode(head[:1] + [[Kind.STRINGS, Raw(_array_of(b"\xa1a", 60 << 20 >> 1, "first")),
                                            Codec.ZLIB, 0]]),
        # 960 stacks of 65,536 frame ids (each 0): 60 MiB raw, gigabytes as tuples of ints.
        "long-stacks": encode(head + [[Kind.STACKS, Raw(_stacks_of(960, 1 << 16)), Codec.ZLIB, 0]]),
        # A chunk of a kind this reader does not know, inflating to 256 MiB.
        "unknown-kind": encode(head + [[200, Raw(bytes(256 << 20)), Codec.ZLIB, 0]]),
        # A key this reader does not know, holding 60 million empty lists.
        "nested-unknown-key": encode(head + [[Kind.SAMPLES, Raw(b"\x83" + msgpack.packb("count") + b"\x00"
                                                                + msgpack.packb("columns") + _empty_columns()
                                                                + msgpack.packb("future")
                                                                + b"\xdd" + struct.pack(">I", 60 << 20)
                                                                + b"\x90" * (60 << 20)), Codec.ZLIB, 0]]),
    }


def _array_of(item, n, first_key):
    return (b"\x82" + msgpack.packb(first_key) + b"\x00" + msgpack.packb("values")
            + b"\xdd" + struct.pack(">I", n) + item * n)


def _stacks_of(count, depth):
    return (b"\x83" + msgpack.packb("first") + b"\x03" + msgpack.packb("lengths")
            + msgpack.packb([depth] * count) + msgpack.packb("frames") + b"\xdd"
            + struct.pack(">I", count * depth) + b"\x00" * (count * depth))


def _empty_columns():
    return msgpack.packb({name: [dtype, 0, b""] for name, (dtype, _) in SAMPLE_COLUMNS.items()},
                         use_bin_type=True)


#: Valid, but its two samples are 36 years apart: a timeline of them at 1 s has 10^9 buckets.
def long_span(complete):
    def edit(chunks):
        chunks[SAMPLES][1]["count"] = 2
        chunks[SAMPLES][1]["columns"] = {"t": column("t", [0, (1 << 60) - 1]), "tid": column("tid", [1, 1]),
                                         "stack": column("stack", [0, 0])}
        del chunks[SAMPLES + 1:TRAILER]
    return edited(complete, edit)


def write(path, data):
    with open(os.path.join(HERE, path), "wb") as f:
        f.write(data)
    if path.startswith("v1/"):
        with open(os.path.join(HERE, path[:-4] + ".dump.txt"), "w", encoding="utf-8") as text:
            dump(io.BytesIO(data), text)


def main():
    complete = small_recording()
    write("v1/complete.spy", complete)
    write("v1/no-trailer.spy", small_recording(with_trailer=False))
    write("v1/unknown-kind.spy", small_recording(unknown_kind=True))
    write("v1/torn-tail.spy", complete[:-7])
    write("invalid/bad-magic.spy", b"\x89SPX" + complete[4:])
    write("invalid/newer-major.spy", complete[:8] + bytes([2]) + complete[9:])
    flipped = bytearray(complete)
    flipped[200] ^= 0x40
    write("invalid/bad-checksum.spy", bytes(flipped))
    huge = bytearray(complete)
    struct.pack_into("<I", huge, PREAMBLE.size, 0xFFFFFFF0)
    write("invalid/huge-length.spy", bytes(huge))
    write("invalid/not-a-recording.spy", b"this is a text file, not a recording\n")
    write("invalid/empty.spy", b"")
    for name, data in invalid_files(complete).items():
        write("invalid/%s.spy" % name, data)
    os.makedirs(os.path.join(HERE, "amplify"), exist_ok=True)
    for name, data in amplification_files(complete).items():
        write("amplify/%s.spy" % name, data)
    write("amplify/long-span.spy", long_span(complete))


if __name__ == "__main__":
    main()
