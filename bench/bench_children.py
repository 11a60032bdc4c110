"""What ``spyrec -C`` costs: a busy process with idle Python children, recorded with and
without following them.

    .venv/bin/python -m bench.bench_children [--python PY] [--children 0,4,16] [--rate 1000]
                                             [--seconds 6] [--runs 3]

Each run starts bench/targets/idle_children.py (CHILDREN forked children asleep, the parent
busy) and records it attached by PID, with ``-C`` (for 0 children too: the look for them ten
times a second) and, for comparison, without.  Printed per setting, as medians over the runs:
recorder CPU (its schedstat run time over the middle of the recording, in cores), the mean wall
time of a round (from the trailer), and the busy parent's samples per second.  Not a unit test.
"""

import argparse
import os
import statistics
import tempfile

from bench.common import (BENCH, DEFAULT_PYTHON, command_line, interpreter, python_help,
                          record_and_measure)

TARGET = os.path.join(BENCH, "targets", "idle_children.py")


def one_run(python, children, follow, rate, seconds, workdir):
    cores, info = record_and_measure([python, TARGET, str(children), str(seconds + 10)],
                                     ["-C"] if follow else [], rate, seconds, workdir)
    return {"cores": cores, "round_us": info["trailer"]["sampling_cost_ns"][1] / 1e3,
            "rate": info["rate_main_thread"], "processes": info["processes"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=DEFAULT_PYTHON, help=python_help(default=DEFAULT_PYTHON))
    parser.add_argument("--children", default="0,4,16")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    python = interpreter(args.python)
    settings = [(0, False)] + [(int(n), True) for n in args.children.split(",")]
    results = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.runs):
            for children, follow in settings:
                results[children, follow].append(one_run(python, children, follow, args.rate,
                                                         args.seconds, workdir))
    print("Command: %s" % command_line("bench.bench_children"))
    print("1 busy process, %d Hz, %g s, median of %d runs" % (args.rate, args.seconds, args.runs))
    print("| idle children | -C | processes | recorder CPU (cores) | round (µs) | busy samples/s |")
    print("|---|---|---|---|---|---|")
    for children, follow in settings:
        rows = results[children, follow]
        print("| %d | %s | %d | %.3f | %.0f | %.0f |" % (
            children, "yes" if follow else "no", rows[0]["processes"],
            statistics.median(r["cores"] for r in rows),
            statistics.median(r["round_us"] for r in rows),
            statistics.median(r["rate"] for r in rows)))


if __name__ == "__main__":
    main()
