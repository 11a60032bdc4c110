"""What ``spyrec --kernel`` costs over plain recording, on threads that wake all the time.

    .venv/bin/python -m bench.bench_kernel_frames [--python PY] [--threads 4] [--rate 1000]
                                                  [--seconds 6] [--runs 3]

Each run starts bench/targets/nappers.py (``--threads`` threads sleeping 0.5 ms in a loop, one
thread busy) and records it with spyrec attached by PID, alternately without and with
``--kernel``.  A napper that ran since the last round is found asleep again, so every round
reads its kernel stack: the most ``--kernel`` can cost.  Printed per mode, as medians over the
runs: recorder CPU (its schedstat run time over the middle of the recording, in cores), the
mean wall time of a round (from the trailer), and samples per second.  Not a unit test.
"""

import argparse
import os
import statistics
import tempfile

from bench.common import (BENCH, DEFAULT_PYTHON, command_line, interpreter, python_help,
                          record_and_measure)

TARGET = os.path.join(BENCH, "targets", "nappers.py")


def one_run(python, threads, rate, seconds, kernel, workdir):
    cores, info = record_and_measure([python, TARGET, str(threads), str(seconds + 10)],
                                     ["--kernel"] if kernel else [], rate, seconds, workdir)
    trailer = info["trailer"]
    return {"cores": cores, "round_us": trailer["sampling_cost_ns"][1] / 1e3,
            "samples_per_s": trailer["samples"] / (trailer["duration_ns"] / 1e9)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=DEFAULT_PYTHON, help=python_help(default=DEFAULT_PYTHON))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    python = interpreter(args.python)
    results = {False: [], True: []}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.runs):
            for kernel in (False, True):
                results[kernel].append(one_run(python, args.threads, args.rate, args.seconds,
                                               kernel, workdir))
    print("Command: %s" % command_line("bench.bench_kernel_frames"))
    print("%d nappers + 1 busy thread, %d Hz, %g s, median of %d runs"
          % (args.threads, args.rate, args.seconds, args.runs))
    print("| mode | recorder CPU (cores) | round (µs) | samples/s |")
    print("|---|---|---|---|")
    for kernel in (False, True):
        rows = results[kernel]
        print("| %s | %.3f | %.0f | %.0f |" % (
            "--kernel" if kernel else "plain",
            statistics.median(r["cores"] for r in rows),
            statistics.median(r["round_us"] for r in rows),
            statistics.median(r["samples_per_s"] for r in rows)))


if __name__ == "__main__":
    main()
