"""Benchmark of the .spy format: bytes per sample, write cost per sample, read rate into numpy.

    .venv/bin/python -m bench.bench_format [--seconds 5] [--rate 1000] [--austin PATH]

1. Records the 30-deep CPU-bound target (bench/targets/deep.py) with spyrec, and with Austin's
   binary MOJO output (``austin -b``) when Austin is installed, at the same rate, and reports the
   bytes per sample of each (Austin's sample count comes from its own ``errors`` metadata).
2. Replays the recorded samples through ``SpyWriter`` to time the write cost per sample.
3. Builds a recording of several million samples from the real one and times
   ``read_recording`` into numpy arrays.

Prints a Markdown table; the figures in docs/benchmarks.md come from it.
"""

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from bench.common import DEEP, interpreter, python_help
from spyformat import Interner, SpyWriter, read_recording


def record_spyrec(python, seconds, rate, out):
    subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out, "-r", str(rate), "--",
                    python, DEEP, "--seconds", str(seconds)], check=True, stdout=subprocess.DEVNULL)
    with open(out, "rb") as f:
        rec = read_recording(f)
    return rec


def record_austin(austin, python, seconds, rate, out):
    """Austin's file size and sample count (from the statistics it prints on stderr)."""
    interval_us = int(1e6 / rate)
    result = subprocess.run([austin, "-b", "-i", str(interval_us), "-o", out, python, DEEP,
                             "--seconds", str(seconds)], check=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stderr)
    match = re.search(r"Error rate\s*:\s*\d+/(\d+)", plain)
    return os.path.getsize(out), int(match.group(1)) if match else None


def write_cost(rec, repeat=3):
    """Seconds per sample to intern (every frame and the stack) and write the samples again.

    This is an upper bound of the recorder's writing cost: the sampler skips frame interning
    for a stack it has seen before.
    """
    f, names = rec.frames, rec.strings
    frame_keys = [(names[f["file"][i]], names[f["name"][i]], names[f["qualname"][i]], f["line"][i],
                   f["column"][i]) for i in range(len(f["file"]))]
    columns = [rec.samples[c].tolist() for c in ("t", "pid", "tid", "stack", "cpu", "rss", "flags")]
    rows = list(zip(*columns))
    best = float("inf")
    for _ in range(repeat):
        out = io.BytesIO()
        writer = SpyWriter(out)
        interned = Interner(writer)
        writer.write_header({"pid": 1})
        start = time.perf_counter()
        for t, pid, tid, stack, cpu, rss, flags in rows:
            frame_ids = tuple(interned.frame_id(*frame_keys[i]) for i in rec.stacks[stack])
            writer.sample(t, pid, tid, interned.stack_id(frame_ids), cpu, rss, flags)
            writer.maybe_flush(t)
        writer.close({})
        best = min(best, (time.perf_counter() - start) / len(rows))
    return best


def big_recording(rec, target_samples):
    """A recording of about ``target_samples`` samples made by repeating the real one."""
    out = io.BytesIO()
    writer = SpyWriter(out, max_batch=65536)
    writer.write_header({"pid": 1})
    interned = Interner(writer)
    f, names = rec.frames, rec.strings
    frames = [interned.frame_id(names[f["file"][i]], names[f["name"][i]], names[f["qualname"][i]],
                              f["line"][i], f["column"][i]) for i in range(len(f["file"]))]
    stacks = [interned.stack_id(tuple(frames[i] for i in s)) for s in rec.stacks]
    columns = [rec.samples[c].tolist() for c in ("t", "pid", "tid", "stack", "cpu", "rss", "flags")]
    rows = list(zip(*columns))
    span = rows[-1][0] + 1
    count = 0
    offset = 0
    while count < target_samples:
        for t, pid, tid, stack, cpu, rss, flags in rows:
            writer.sample(t + offset, pid, tid, stacks[stack], cpu, rss, flags)
        count += len(rows)
        offset += span
    writer.close({})
    return out.getvalue(), count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--python", default=shutil.which("python3"), type=interpreter,
                        help=python_help(default="python3 on PATH"))
    parser.add_argument("--austin", default=shutil.which("austin"))
    parser.add_argument("--read-samples", type=int, default=5_000_000)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="spybench-")
    rec = record_spyrec(args.python, args.seconds, args.rate, os.path.join(tmp, "deep.spy"))
    spy_bytes = os.path.getsize(os.path.join(tmp, "deep.spy"))
    depth = max(len(s) for s in rec.stacks)
    rows = [("spyrec .spy", spy_bytes, rec.sample_count)]
    if args.austin:
        mojo_bytes, mojo_samples = record_austin(args.austin, args.python, args.seconds, args.rate,
                                                 os.path.join(tmp, "deep.mojo"))
        rows.append(("Austin MOJO (-b)", mojo_bytes, mojo_samples))
    print("Target: bench/targets/deep.py (stack depth %d), %.0f s at %d Hz, %s\n"
          % (depth, args.seconds, args.rate, args.python))
    print("| recorder | file bytes | samples | bytes/sample |")
    print("|---|---|---|---|")
    for name, size, samples in rows:
        print("| %s | %d | %s | %.2f |" % (name, size, samples, size / samples if samples else float("nan")))
    if len(rows) == 2 and rows[1][2]:
        ratio = (rows[0][1] / rows[0][2]) / (rows[1][1] / rows[1][2])
        print("\n.spy bytes per sample = %.3f x Austin MOJO's (target: at most 0.1)" % ratio)
    cost = write_cost(rec)
    print("\nWrite cost (intern stack + append + flush), replaying %d samples: %.2f µs/sample"
          % (rec.sample_count, cost * 1e6))
    data, count = big_recording(rec, args.read_samples)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        loaded = read_recording(io.BytesIO(data))
        best = min(best, time.perf_counter() - start)
    assert loaded.sample_count == count
    print("Read rate into numpy: %d samples (%.1f MB) in %.3f s = %.1f M samples/s (target: >= 5)"
          % (count, len(data) / 1e6, best, count / best / 1e6))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
