"""Fuzzing the reader: byte mutations, and mutations of the decoded records re-encoded with
valid checksums, so that they reach past the CRC into every field check.

Used by tests/test_hostile_files.py (bounded and seeded, in CI) and scripts/fuzz-reader.py (a
long run on demand).  ``run_case`` puts one input through everything a user can do with a file
and returns the crash site of any exception that is not the package's own error.
"""

import glob
import importlib.util
import io
import os
import random
import re
import traceback
import warnings

import msgpack

from spyformat.chunks import PREAMBLE
from spyformat.columns import DTYPES as COLUMN_DTYPES
from spyformat.columns import SAMPLE_COLUMNS, Transform, encode_column

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = sorted(glob.glob(os.path.join(ROOT, "formats", "golden", "v1", "*.spy")))


def _make_golden():
    spec = importlib.util.spec_from_file_location(
        "make_golden", os.path.join(ROOT, "formats", "golden", "make_golden.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden = _make_golden()

#: Values at the edges of every type a field can hold, and of the types it cannot.
EDGES = [0, 1, -1, 255, 256, 65535, 65536, (1 << 31) - 1, 1 << 31, -(1 << 31), (1 << 32) - 1, 1 << 32,
         (1 << 53) + 1, (1 << 60) - 1, 1 << 60, (1 << 62), (1 << 63) - 1, -(1 << 63), (1 << 64) - 1,
         0.0, -0.0, 1.5, float("nan"), float("inf"), float("-inf"), True, False, None, "", "x",
         "\x1b]0;title\x07\x1b[2J", "a;b\nc\r", "é" * 300, b"", b"\x00" * 9, [], [0], [-1], [None],
         [[]], {}, {"k": 1}, {1: 2}, msgpack.ExtType(5, b"x"), [0] * 70000, "y" * 100000]
DTYPES = ["u1", "u2", "u4", "u8", "i4", "i8", "f8", "", 7]
#: At most this many sample values are made up for one column.
MAX_GENERATED = 4096
#: Values tried in a chunk header, by record field: kind, codec, flags.
_HEADER_VALUES = {0: (0, 1, 2, 7, 8, 9, 200, 255), 2: (0, 1, 2, 255), 3: (1, 0x8000, 0xFFFF)}


def mutated_bytes(rng, data):
    """The file's bytes with a few changed, flipped, cut or inserted (blind to the format)."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(data))
        how = rng.randrange(4)
        if how == 0:
            data[at] = rng.randrange(256)
        elif how == 1:
            data[at] ^= 1 << rng.randrange(8)
        elif how == 2:
            del data[at:at + rng.randint(1, 16)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def _edge(rng):
    return rng.choice(EDGES)


def _mutate_value(rng, value):
    """A changed version of one field's value: an edge value, or an edge inside a list."""
    if isinstance(value, list) and value and rng.random() < 0.5:
        value = list(value)
        how = rng.randrange(4)
        at = rng.randrange(len(value))
        if how == 0:
            value[at] = _edge(rng)
        elif how == 1:
            del value[at]
        elif how == 2:
            value.insert(at, value[at])
        else:
            value = value * rng.randint(2, 4)
        return value
    return _edge(rng)


def _mutate_columns(rng, payload):
    columns = payload.get("columns")
    count = payload.get("count")
    if not isinstance(columns, dict) or not columns or not isinstance(count, int):
        return False
    count = max(0, min(count, MAX_GENERATED))    # a count mutated before: values for a few
    name = rng.choice(sorted(columns, key=str))
    how = rng.randrange(6)
    if how == 0:                                   # other values in the right encoding
        dtype, transforms = SAMPLE_COLUMNS.get(name, ("i8", 0))
        transforms &= Transform.SHUFFLE       # values as given, no deltas to wrap
        values = [rng.choice([0, 1, -1, (1 << 31) - 1, (1 << 32) - 1, (1 << 62), (1 << 63) - 1, -(1 << 63)])
                  for _ in range(count)]
        signed = dtype.startswith("i")
        bits = COLUMN_DTYPES[dtype][1] * 8
        values = [v % (1 << bits) - ((1 << bits) if signed and v % (1 << bits) >= 1 << (bits - 1) else 0)
                  for v in values]
        columns[name] = [dtype, transforms, encode_column(values, dtype, transforms)]
    elif how == 1:                                 # another dtype, random bytes of its size
        dtype = rng.choice(DTYPES)
        size = COLUMN_DTYPES.get(dtype, ("B", 8))[1]
        columns[name] = [dtype, 0, bytes(rng.randrange(256) for _ in range(count * size))]
    elif how == 2:                                 # transforms bits
        columns[name] = [columns[name][0], _edge(rng), columns[name][2]]
    elif how == 3:                                 # bytes cut or grown
        raw = bytes(columns[name][2])
        columns[name] = [columns[name][0], columns[name][1], raw[:-1] if rng.random() < 0.5 else raw + b"\0"]
    elif how == 4:
        del columns[name]
    else:
        columns[name] = _edge(rng)
    return True


def mutated_records(rng, data):
    """The file's records with a few fields, records or chunk headers changed, encoded again
    with valid checksums; None when the mutation cannot be encoded at all."""
    chunks = golden.records(data)
    for _ in range(rng.randint(1, 3)):
        index = rng.randrange(len(chunks))
        kind, payload, codec, flags = chunks[index]
        how = rng.randrange(10)
        if how <= 3 and isinstance(payload, dict) and payload:
            key = rng.choice(sorted(payload, key=str))
            if how <= 1 and kind == golden.Kind.SAMPLES and _mutate_columns(rng, payload):
                continue
            payload[key] = _mutate_value(rng, payload[key])
        elif how == 4 and isinstance(payload, dict) and payload:
            del payload[rng.choice(sorted(payload, key=str))]
        elif how == 5 and isinstance(payload, dict):
            payload[rng.choice(["future", "x" * 40, 7, "count", "first"])] = _edge(rng)
        elif how == 6:                                     # a record twice
            chunks.insert(rng.randrange(len(chunks) + 1), [kind, payload, codec, flags])
        elif how == 7 and len(chunks) > 1:                 # records reordered or dropped
            moved = chunks.pop(index)
            if rng.random() < 0.7:
                chunks.insert(rng.randrange(len(chunks) + 1), moved)
        elif how == 8:                                     # a chunk header's kind, codec or flags
            field = rng.choice((0, 2, 3))
            chunks[index][field] = rng.choice(_HEADER_VALUES[field])
        else:                                              # the whole payload replaced
            chunks[index][1] = _edge(rng)
    try:
        return golden.encode(chunks, preamble=data[:PREAMBLE.size])
    except (OverflowError, TypeError, ValueError):
        return None


def mutated(rng, data):
    """One input from a golden file: a structure mutation two times in three, else bytes."""
    if rng.random() < 2 / 3:
        encoded = mutated_records(rng, data)
        if encoded is not None:
            return encoded
    return mutated_bytes(rng, data)


def crash_site(exc):
    """Where an unexpected exception came from: its type and the innermost frame of our code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/spyrec/" in f.filename or "/spyanalyze/" in f.filename]
    where = frames[-1] if frames else traceback.extract_tb(exc.__traceback__)[-1]
    return "%s at %s:%d (%s)" % (type(exc).__name__, os.path.relpath(where.filename, ROOT), where.lineno,
                                 where.name)


def run_case(data, path, cli=False, max_memory=512 << 20):
    """Put one input through reading, every view and export, the writer and dump (and the
    commands of the CLI when ``cli``).  Returns "read", "refused: REASON" (numbers as N), or a
    crash site."""
    with open(path, "wb") as f:
        f.write(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a warning printed is output nobody asked for
        return _exercise(data, path, cli, max_memory)


def _exercise(data, path, cli, max_memory):
    from spyanalyze import views
    from spyanalyze.export import collapsed, speedscope
    from spyanalyze.recording import Recording
    from spyanalyze.writer import write
    import spyformat
    from spyrec.errors import SpyError

    outcome = "read"
    try:
        try:
            spyformat.dump(io.BytesIO(data), io.StringIO(), max_memory=max_memory)
            recording = Recording.from_data(spyformat.read_recording(io.BytesIO(data), max_memory=max_memory),
                                            source=path)
            views.summary(recording)
            recording.by_function(), recording.by_line(), recording.by_file(), recording.by_thread()
            recording.timeline("10ms")
            collapsed.write(recording, io.StringIO(), threads=True)
            speedscope.write(recording, io.StringIO())
            _rewritten_reads(recording, write, spyformat, SpyError)
        except SpyError as exc:
            outcome = "refused: " + re.sub(r"\d+", "N", str(exc))
        if cli:
            _run_cli(path)
    except Exception as exc:  # noqa: BLE001 - this is what a fuzzer looks for
        return crash_site(exc)
    return outcome


def _rewritten_reads(recording, write, spyformat, error):
    """What ``spyanalyze filter`` writes from a recording that was read must read again."""
    out = io.BytesIO()
    write(recording, out)
    try:
        spyformat.read_recording(io.BytesIO(out.getvalue()))
    except error as exc:
        raise AssertionError("the writer wrote a file the reader refuses: %s" % exc) from None


#: The commands a user runs on a file (the filter's output goes to a scratch file).
COMMANDS = (["info"], ["info", "--json"], ["top", "--by", "line"], ["export", "-f", "collapsed"],
            ["export", "-f", "speedscope"], ["dump"], ["filter", "-o", None], ["diff", None, None])


def _run_cli(path):
    from click.testing import CliRunner

    from spyanalyze.cli import main

    for command in COMMANDS:
        args = [path + ".out" if a is None and command[0] == "filter" else a for a in command]
        if command[0] == "diff":
            args = ["diff", path, path]
        elif command[0] != "filter":
            args = args + [path]
        else:
            args = ["filter", path] + args[1:]
        result = CliRunner().invoke(main, ["--max-memory", "512M"] + args)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if result.exit_code not in (0, 1):
            raise AssertionError("%s exits %d" % (command[0], result.exit_code))
        errors = [line for line in result.stderr.splitlines() if line.startswith("spyanalyze: error")]
        if result.exit_code == 1 and len(errors) != 1:
            raise AssertionError("%s fails without one error line" % command[0])


def seeds():
    return [open(path, "rb").read() for path in GOLDEN]


def is_crash(outcome):
    return not (outcome == "read" or outcome.startswith("refused: "))


def run(seed, cases, tmp_dir, cli=False, on_crash=None):
    """``cases`` seeded inputs; returns {outcome or crash site: count}."""
    rng = random.Random(seed)
    inputs = seeds()
    path = os.path.join(str(tmp_dir), "fuzzed.spy")
    outcomes = {}
    for _ in range(cases):
        data = mutated(rng, rng.choice(inputs))
        outcome = run_case(data, path, cli=cli)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if on_crash and is_crash(outcome):
            on_crash(outcome, data)
    return outcomes
