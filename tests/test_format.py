"""The .spy codec: golden files, torn tails, corruption, forward compatibility, streaming."""

import io
import os
import random
import re
import subprocess
import sys

import pytest

import spyformat
from spyformat.errors import CorruptRecording, IncompatibleRecording
from spyformat import Interner, Kind, SampleFlag, SpyWriter, read_recording
from spyformat.chunks import CHUNK_HEADER, encode_chunk, encode_preamble
from spyformat.columns import SAMPLE_COLUMNS, encode_column

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "formats", "golden")


def golden_bytes(name):
    path = os.path.join(GOLDEN, name)
    assert os.path.exists(path), "golden file %s is missing (never created by tests)" % name
    with open(path, "rb") as f:
        return f.read()


def read_bytes(data):
    return read_recording(io.BytesIO(data))


def stack_names(rec, stack_id):
    return [rec.strings[rec.frames["qualname"][f]] for f in rec.stacks[stack_id]]


# -- golden files ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["complete", "no-trailer", "unknown-kind", "torn-tail"])
def test_golden_dump_is_unchanged(name):
    # GIVEN a golden recording and the dump written beside it when the format was defined
    data = golden_bytes("v1/%s.spy" % name)
    with open(os.path.join(GOLDEN, "v1", name + ".dump.txt"), encoding="utf-8") as f:
        expected = f.read()
    # WHEN it is dumped by today's codec
    out = io.StringIO()
    spyformat.dump(io.BytesIO(data), out)
    # THEN every record decodes exactly as it did
    assert out.getvalue() == expected


def test_golden_complete_decodes_to_known_content():
    rec = read_bytes(golden_bytes("v1/complete.spy"))
    assert rec.version == (1, 0)
    assert rec.header["pid"] == 4242 and rec.header["python_version"] == "3.12.1"
    assert rec.sample_count == 13
    assert rec.samples["tid"].tolist() == [4242, 4243] * 6 + [4242]
    assert rec.samples["t"].tolist()[:4] == [0, 50_000, 10_000_000, 10_050_000]
    assert rec.samples["rss"].tolist()[-1] == 20_000_000
    assert stack_names(rec, rec.samples["stack"][0]) == ["<module>", "fib", "fib", "fib"]
    assert stack_names(rec, rec.samples["stack"][1]) == ["calcül"]
    worker = rec.threads[(4242, 4243)]
    assert worker["name"] == "wörker-関" and worker["end_ns"] == 60_000_000
    cafe = rec.stacks[rec.samples["stack"][1]][0]
    assert rec.strings[rec.frames["file"][cafe]] == "/srv/app/café.py"
    assert rec.frames["line"][cafe] == 70001
    assert (rec.samples["flags"][1::2] == SampleFlag.IDLE).all()
    assert rec.trailer["stop_reason"] == "target exited"
    assert rec.lost_bytes == 0


def test_golden_without_trailer_and_torn_tail_keep_their_samples():
    killed = read_bytes(golden_bytes("v1/no-trailer.spy"))
    assert killed.trailer is None and killed.sample_count == 13 and killed.lost_bytes == 0
    torn = read_bytes(golden_bytes("v1/torn-tail.spy"))
    assert torn.trailer is None and torn.sample_count == 13 and torn.lost_bytes > 0


def test_unknown_chunk_kinds_are_skipped():
    rec = read_bytes(golden_bytes("v1/unknown-kind.spy"))
    assert rec.unknown_chunks == 1 and rec.sample_count == 13 and rec.trailer is not None


#: Every file of formats/golden/invalid (one per rule of the spec) and what it must be told.
INVALID = {
    "bad-magic": "bad magic",
    "newer-major": "format 2.0",
    "bad-checksum": "checksum mismatch",
    "huge-length": "over the 67108864-byte bound",
    "not-a-recording": "bad magic",
    "empty": "empty file",
    "reserved-preamble": "preamble's reserved field is 1",
    "two-headers": "a second HEADER",
    "header-not-first": "the first chunk is of kind 2, not the HEADER",
    "chunk-after-trailer": "a chunk follows the TRAILER",
    "compressed-header": "the HEADER is compressed",
    "header-format-differs": "the HEADER says format 1.7, the preamble 1.0",
    "reserved-chunk-flags": "chunk flags are 1, not 0",
    "negative-string-id": "STRINGS 'first' is -1",
    "negative-frame-ref": "STACKS 'frames' holds a value outside",
    "undefined-frame-ref": "refers to a frame that is not defined yet",
    "stack-lengths-differ": "STACKS lengths do not add up",
    "stack-too-deep": "STACKS 'lengths' holds a value outside [0, 65537)",
    "frame-line-above-int64": "FRAMES 'line' holds a value outside [0, 2^31)",
    "frame-columns-differ": "FRAMES columns differ in length",
    "frame-source-undefined": "FRAMES source refers to a string that is not defined yet",
    "header-cwd-not-a-string": "HEADER 'cwd' is not a string",
    "header-start-wall-not-an-int": "HEADER 'start_wall_ns' is not an integer in [0, 2^62)",
    "header-interval-zero": "HEADER 'interval_ns' is 0, not an integer in [1, 2^60)",
    "header-argv-not-a-list": "HEADER 'argv' is not a list",
    "header-float-pid": "HEADER 'pid' is not an integer",
    "thread-name-not-a-string": "THREAD 'name' is not a string or nil",
    "thread-negative-start": "THREAD 'start_ns' is -1",
    "process-without-pid": "PROCESS lacks the 'pid' field",
    "trailer-negative-samples": "TRAILER 'samples' is -13",
    "trailer-cost-not-three": "TRAILER 'sampling_cost_ns' has 2 items, not 3",
    "payload-not-a-map": "TRAILER payload is not a map",
    "key-twice": "TRAILER has the key 'end_ns' twice",
    "bytes-after-the-map": "TRAILER has bytes after its map",
    "extension-type": "PROCESS holds a msgpack extension type",
    "samples-without-tid": "SAMPLES chunk lacks the 'tid' column",
    "sample-count-huge": "SAMPLES chunk of 4611686018427387904 samples would take",
    "sample-column-short": "column 'cpu': column holds 88 bytes, expected 12 x 8",
    "sample-column-not-a-triple": "column 'cpu' is not a [dtype, transforms, bytes] triple",
    "sample-flags-reserved-bits": "column 'flags' holds a value outside [0, 8)",
    "sample-flags-wide-dtype": "column 'flags' has dtype 'u8', not 'u1'",
    "sample-stack-negative": "column 'stack' has dtype 'i8', not 'u4'",
    "sample-stack-undefined": "a sample refers to an undefined stack",
    "sample-syscall-undefined": "column 'syscall' refers to a string that is not defined yet",
    "sample-time-negative": "column 't' holds a value outside [0, 2^60)",
    "sample-time-out-of-range": "column 't' holds a value outside [0, 2^60)",
    "sample-unknown-transform": "column 'pid' has unknown transform bits 6",
}


def test_every_invalid_golden_file_has_its_expected_message():
    names = {os.path.basename(p)[:-4] for p in os.listdir(os.path.join(GOLDEN, "invalid"))}
    assert names == set(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_golden_files_are_refused_clearly(name):
    error = IncompatibleRecording if name == "newer-major" else CorruptRecording
    with pytest.raises(error) as caught:
        read_bytes(golden_bytes("invalid/%s.spy" % name))
    message = str(caught.value)
    assert INVALID[name] in message and "\n" not in message


def test_spec_and_codec_agree_on_version_and_kinds():
    with open(os.path.join(ROOT, "formats", "spy.md"), encoding="utf-8") as f:
        spec = f.read()
    assert "Format version: **%d.%d**" % spyformat.FORMAT_VERSION in spec
    table = dict((int(k), v) for k, v in re.findall(r"^\| (\d+) \| `([A-Z]+)` \|", spec, re.M))
    assert table == Kind.NAMES
    for column, (dtype, _) in SAMPLE_COLUMNS.items():
        assert re.search(r"^\| `%s` \| %s \|" % (column, dtype), spec, re.M), column


def test_spec_and_reader_agree_on_limits():
    from spyformat import limits
    from spyanalyze import views
    with open(os.path.join(ROOT, "formats", "spy.md"), encoding="utf-8") as f:
        spec = f.read()
    costs = dict(re.findall(r"^\| ([a-zA-Z ()]+?) \| (\d+)(?: \+ [^|]+)? \|$", spec, re.M))
    assert costs == {"sample": str(limits.SAMPLE_COST), "string": str(limits.STRING_COST),
                     "frame": str(limits.FRAME_COST), "stack": str(limits.STACK_COST),
                     "stack entry (a frame id in a stack)": str(limits.STACK_ENTRY_COST),
                     "PROCESS or THREAD record": str(limits.RECORD_COST)}
    assert "exceeds %d MiB" % (limits.MAX_PAYLOAD_BYTES >> 20) in spec
    assert "exceeds 256 MiB" in spec and limits.MAX_RAW_BYTES == 256 << 20
    assert "or %d MiB for the record kinds" % (limits.MAX_RECORD_RAW_BYTES >> 20) in spec
    assert "at most %d in one map" % limits.MAX_MAP_KEYS in spec
    assert "plus %d KiB" % (limits.UNKNOWN_SLACK_BYTES >> 10) in spec
    assert "at most {:,}".format(limits.MAX_STACK_DEPTH) in spec
    assert "at most {:,} buckets".format(views.MAX_TIMELINE_BUCKETS) in spec


# -- round trips -------------------------------------------------------------------------------

def realistic_recording(samples=3000, seed=7, flush_every=500):
    """A multi-thread recording with jittered timing, written in several flushes."""
    rng = random.Random(seed)
    out = io.BytesIO()
    writer = SpyWriter(out)
    interned = Interner(writer)
    writer.write_header({"pid": 99, "interval_ns": 1_000_000})
    frames = [interned.frame_id("/app/m%d.py" % (i % 5), "f%d" % i, "C.f%d" % i, 10 + i, i % 7)
              for i in range(40)]
    expected = []
    t = 0
    for i in range(samples):
        t += 1_000_000 + rng.randint(-30_000, 30_000)
        depth = rng.randint(1, 30)
        stack = interned.stack_id(tuple(frames[:depth]))
        row = (t, 99, 100 + i % 4, stack, rng.randint(0, 1_000_000), 50_000_000 + rng.randint(0, 9) * 4096,
               rng.choice([0, SampleFlag.IDLE, SampleFlag.GIL]))
        writer.sample(*row)
        expected.append(row)
        if i % flush_every == flush_every - 1:
            writer.flush()
    writer.close({"samples": samples})
    return out.getvalue(), expected


def test_round_trip_preserves_every_sample():
    data, expected = realistic_recording()
    rec = read_bytes(data)
    got = list(zip(*(rec.samples[c].tolist() for c in ("t", "pid", "tid", "stack", "cpu", "rss", "flags"))))
    assert got == expected
    assert rec.trailer == {"samples": 3000}


@pytest.mark.parametrize("line, column", [(-1, -1), (1 << 31, -1), (5, -2), (5, 1 << 31)])
def test_the_writer_refuses_a_frame_position_its_reader_would_refuse(line, column):
    """A line the spec's FRAMES range leaves out (one decoded from a freed code object's
    memory once made a whole recording unreadable) is refused when it is defined, and what
    was written before stays readable."""
    out = io.BytesIO()
    writer = SpyWriter(out)
    interned = Interner(writer)
    writer.write_header({"pid": 99, "interval_ns": 1_000_000})
    good = interned.frame_id("/app/m.py", "f", "f", (1 << 31) - 1, (1 << 31) - 1)
    with pytest.raises(ValueError):
        interned.frame_id("/app/m.py", "g", "g", line, column)
    writer.sample(1, 99, 100, interned.stack_id((good,)), 0, 0, 0)
    writer.close({"samples": 1})
    rec = read_bytes(out.getvalue())
    assert list(rec.frames["line"]) == [(1 << 31) - 1] and rec.sample_count == 1


def test_writer_never_seeks_so_it_streams_to_a_pipe():
    # GIVEN a writer whose stream is the write end of a real pipe, read by a child process
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from spyformat import read_recording; "
         "r = read_recording(sys.stdin.buffer); print(r.sample_count, r.trailer['samples'])"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = SpyWriter(reader.stdin)
    writer.write_header({"pid": 1})
    interned = Interner(writer)
    stack = interned.stack_id((interned.frame_id("a.py", "f", "f", 1),))
    for i in range(1000):
        writer.sample(i, 1, 1, stack, 0, 0, 0)
    writer.close({"samples": 1000})
    reader.stdin.close()
    # THEN the reader on the other end gets everything
    assert reader.stdout.read().split() == [b"1000", b"1000"]
    assert reader.wait() == 0


def test_a_stack_is_amended_until_it_is_written_and_not_after():
    """A recorder that learns more of a stack's frames after the samples that use it (a
    native frame's line, decoded meanwhile) amends the stack until the flush writes it; the
    samples read back use the amended frames, and a stack written is left as it was."""
    out = io.BytesIO()
    writer = SpyWriter(out)
    interned = Interner(writer)
    writer.write_header({"pid": 1})
    root = interned.frame_id("m.py", "main", "main", 1)
    written = interned.stack_id((root, interned.frame_id("lib.so", "old", "old", 0)))
    writer.sample(1, 1, 1, written, 0, 0, 0)
    writer.flush()
    pending = interned.stack_id((root, interned.frame_id("lib.so", "f", "f", 0)))
    writer.sample(2, 1, 1, pending, 0, 0, 0)
    inlined, caller = (interned.frame_id("lib.so", name, name, line) for name, line in
                       (("inlined", 12), ("f", 40)))
    assert writer.written_stacks == 1
    assert not writer.amend_stack(written, (root,))
    assert writer.amend_stack(pending, (root, caller, inlined))
    writer.close({})
    rec = read_bytes(out.getvalue())
    assert [stack_names(rec, s) for s in rec.samples["stack"].tolist()] == [
        ["main", "old"], ["main", "f", "inlined"]]


def test_interning_is_bounded_and_ids_stay_valid():
    out = io.BytesIO()
    writer = SpyWriter(out)
    interned = Interner(writer, limit=10)
    writer.write_header({"pid": 1})
    ids = []
    for i in range(100):
        fid = interned.frame_id("f.py", "fn%d" % (i % 30), "fn%d" % (i % 30), i % 30)
        ids.append((i % 30, interned.stack_id((fid,))))
        writer.sample(i, 1, 1, ids[-1][1], 0, 0, 0)
    writer.close({})
    assert len(interned._frames) <= 10 and len(interned._stacks) <= 10 and len(interned._strings) <= 10
    rec = read_bytes(out.getvalue())
    for (n, _), stack in zip(ids, rec.samples["stack"].tolist()):
        assert stack_names(rec, stack) == ["fn%d" % n]


# -- damage --------------------------------------------------------------------------------------

def test_cutting_anywhere_in_the_last_chunks_returns_a_prefix():
    data, expected = realistic_recording(samples=1000, flush_every=200)
    chunks = list(spyformat.SpyReader(io.BytesIO(data)).chunks())
    chunk_starts = [c.offset for c in chunks]
    full_t = [row[0] for row in expected]
    # every third byte, and every byte near a chunk's start, where its header is read
    cuts = set(range(chunk_starts[-6], len(data) + 1, 3))
    cuts.update(cut for start in chunk_starts[-6:] + [len(data)] for cut in range(start - 24, start + 25)
                if chunk_starts[-6] <= cut <= len(data))
    for cut in sorted(cuts):
        rec = read_bytes(data[:cut])
        t = rec.samples["t"].tolist()
        complete = sum(c.payload["count"] for c in chunks
                       if c.kind == Kind.SAMPLES and c.offset + c.size <= cut)
        assert t == full_t[:complete], cut
        if cut < len(data):
            assert rec.trailer is None
            boundary = max(s for s in chunk_starts + [len(data)] if s <= cut)
            assert rec.lost_bytes == cut - boundary, cut


def test_flipped_bytes_give_clean_errors_or_data_with_its_loss_said():
    data, expected = realistic_recording(samples=1500, flush_every=500)
    full_t = [row[0] for row in expected]
    batches = [full_t[i:i + 500] for i in range(0, 1500, 500)]
    rng = random.Random(3)
    positions = list(range(0, 64)) + rng.sample(range(64, len(data)), 400)
    survived = {"prefix": 0, "skipped": 0}
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 1 << rng.randrange(8)
        try:
            rec = read_bytes(bytes(damaged))
        except (CorruptRecording, IncompatibleRecording) as exc:
            assert str(exc).count("\n") == 0
            continue
        # A flip that survives is in a length field that made a torn tail (a prefix is left) or
        # in a SAMPLES chunk, skipped (the other batches are left); either way the loss is said.
        t = rec.samples["t"].tolist()
        assert rec.lost, position
        if "failed its checksum" in rec.lost[0]:
            survived["skipped"] += 1
            assert t in [sum(batches[:i] + batches[i + 1:], []) for i in range(3)], position
        else:
            survived["prefix"] += 1
            assert t == full_t[:len(t)] and "could not be read" in rec.lost[0], position
    assert survived["skipped"] > 0 and survived["prefix"] > 0, survived


def test_a_lying_decompressed_length_is_refused():
    data = bytearray(golden_bytes("v1/complete.spy"))
    chunks = list(spyformat.SpyReader(io.BytesIO(bytes(data))).chunks())
    samples = [c for c in chunks if c.kind == Kind.SAMPLES][0]
    header = CHUNK_HEADER.unpack_from(data, samples.offset)
    length, kind, codec, flags, raw_length, _crc = header
    head = CHUNK_HEADER.pack(length, kind, codec, flags, raw_length - 1, 0)[:12]
    payload = bytes(data[samples.offset + 16:samples.offset + 16 + length])
    import struct
    import zlib
    fixed = head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head)))
    data[samples.offset:samples.offset + 16] = fixed
    with pytest.raises(CorruptRecording, match="declared size"):
        read_bytes(bytes(data))


def test_msgpack_extension_types_are_refused():
    import msgpack
    out = io.BytesIO()
    out.write(encode_preamble())
    raw = msgpack.packb({"pid": msgpack.ExtType(1, b"\x00" * 8)})
    out.write(encode_chunk(Kind.HEADER, {"format": list(spyformat.FORMAT_VERSION), "pid": 1},
                                     spyformat.Codec.NONE))
    import struct
    import zlib
    head = CHUNK_HEADER.pack(len(raw), Kind.PROCESS, 0, 0, len(raw), 0)[:12]
    out.write(head + struct.pack("<I", zlib.crc32(raw, zlib.crc32(head))) + raw)
    with pytest.raises(CorruptRecording, match="extension type"):
        read_bytes(out.getvalue())


def test_samples_referring_to_undefined_stacks_are_corrupt():
    out = io.BytesIO()
    out.write(encode_preamble())
    out.write(encode_chunk(Kind.HEADER, {"format": list(spyformat.FORMAT_VERSION), "pid": 1},
                                     spyformat.Codec.NONE))
    columns = {name: [dtype, tr, encode_column([5], dtype, tr)]
               for name, (dtype, tr) in SAMPLE_COLUMNS.items()}
    out.write(encode_chunk(Kind.SAMPLES, {"count": 1, "columns": columns}))
    with pytest.raises(CorruptRecording, match="undefined stack"):
        read_bytes(out.getvalue())
