"""Rounds a second with many threads: spyrec on tests/targets/many_threads.py.

    .venv/bin/python -m bench.bench_many_threads [--python PY] [--threads 1000] [--busy 2]
                                                 [--rate 1000] [--seconds 3]

Starts the target (THREADS threads blocked for good, BUSY threads sharing the GIL), records it
in this process with ``spyrec.recorder.record`` (the spyrec this interpreter imports: to measure
another, run from outside the repository with PYTHONPATH=OTHER:REPOSITORY), and prints the trailer's
ticks, samples and sampling_cost_ns, the rounds a second, the CPU time of a round (this
thread's, around ``Sampler.sample_round``, the first two rounds left out: they meet every
thread for the first time), which does not depend on what else the machine runs, and whether
every thread was sampled in every round.  Not a unit test.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from bench.common import interpreter, kill, python_help, test_target
from spyrec.recorder import record
from spyformat import read_recording
from tests.pythons import round_cpu_costs

TARGET = test_target("many_threads.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, type=interpreter,
                        help=python_help())
    parser.add_argument("--threads", type=int, default=1000, help="idle threads")
    parser.add_argument("--busy", type=int, default=2, help="CPU-bound threads")
    parser.add_argument("--rate", type=float, default=1000.0, help="sampling rate asked (Hz)")
    parser.add_argument("--seconds", type=float, default=3.0, help="recording duration")
    args = parser.parse_args()
    costs = round_cpu_costs(setattr)
    target = subprocess.Popen([args.python, "-u", TARGET, "120", str(args.threads),
                               str(args.busy)], stdout=subprocess.PIPE)
    try:
        truth = json.loads(target.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "many.spy")
            record(out, pid=truth["pid"], interval_ns=int(1e9 / args.rate),
                   duration_ns=int(args.seconds * 1e9))
            with open(out, "rb") as f:
                rec = read_recording(f)
    finally:
        kill(target)
    trailer = rec.trailer
    seconds = trailer["duration_ns"] / 1e9
    threads = args.threads + args.busy + 1
    counts = {}
    for tid in rec.samples["tid"].tolist():
        counts[tid] = counts.get(tid, 0) + 1
    steady = sorted(costs[2:]) or [0]
    print("threads %d, asked %g Hz for %g s" % (threads, args.rate, args.seconds))
    print("ticks %d, samples %d, sampling_cost_ns [min, mean, max] %s"
          % (trailer["ticks"], trailer["samples"], trailer["sampling_cost_ns"]))
    print("rounds/s %.1f; CPU per round %.2f ms median, %.2f mean (%.1f us per thread)"
          % (trailer["ticks"] / seconds, steady[len(steady) // 2] / 1e6,
             sum(steady) / len(steady) / 1e6, steady[len(steady) // 2] / 1e3 / threads))
    print("threads sampled %d of %d, samples per thread %d-%d"
          % (len(counts), threads, min(counts.values()), max(counts.values())))


if __name__ == "__main__":
    main()
