"""Benchmark the memory of spyanalyze's tables: bytes per sample of ``rec.samples`` (pandas'
deep count, index included), per column, and for the largest size the load time and peak RSS
of a fresh interpreter.  It backs the "10 M samples in memory" figure of docs/benchmarks.md.

    .venv/bin/python -m bench.bench_table_memory                         # 1M and 10M samples
    .venv/bin/python -m bench.bench_table_memory --sizes 1000000 --dir /tmp/spybench

The recordings are bench_analyze's synthetic ones (8 threads at 1 kHz, ~3,000 stacks).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from bench.bench_analyze import generate
from bench.common import command_line, log

MEASURE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import spyanalyze
rec = spyanalyze.load(sys.argv[1])
load_s = time.perf_counter() - t0
samples = rec.samples
usage = samples.memory_usage(deep=True, index=True)
print(json.dumps({
    "samples": len(samples), "load_s": load_s,
    "bytes_per_sample": float(usage.sum() / len(samples)),
    "columns": {name: round(float(value) / len(samples), 2) for name, value in usage.items()},
    "dtypes": {name: str(dtype) for name, dtype in samples.dtypes.items()},
    "frames_bytes": int(rec.frames.memory_usage(deep=True).sum()),
    "stacks_bytes": int(rec.stacks.memory_usage(deep=True).sum()),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def measure(path):
    """Load ``path`` in a fresh interpreter (its peak RSS is the load's own) and return the facts."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", MEASURE, path], capture_output=True, text=True, check=True)
    facts = json.loads(result.stdout)
    facts["wall_s"] = time.perf_counter() - started
    return facts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--dir", default="/tmp/spybench", help="Where the recordings are kept (reused).")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    print("Command: " + command_line("bench.bench_table_memory"))
    print()
    print("| samples | bytes/sample (samples table) | 10 M samples at that rate | load | peak RSS |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        path = os.path.join(args.dir, "analyze-%d-a.spy" % size)
        if not os.path.exists(path):
            log("writing %s" % path)
            generate(path, size, "a")
        facts = measure(path)
        log("columns (bytes/sample): %s" % facts["columns"])
        log("dtypes: %s" % facts["dtypes"])
        print("| {:,} | {:.1f} | {:.0f} MB | {:.2f} s | {:.0f} MB |".format(
            facts["samples"], facts["bytes_per_sample"], facts["bytes_per_sample"] * 10_000_000 / 1e6,
            facts["load_s"], facts["peak_rss_mb"]))


if __name__ == "__main__":
    main()
