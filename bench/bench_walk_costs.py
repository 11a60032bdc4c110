"""What one walk costs, by what the stack did since the walk before: why rounds run back to back
("max") do not sample every state of the target alike.

    .venv/bin/python -m bench.bench_walk_costs [--python LABEL | --sid-root] [--seconds 3]

Not part of the unit tests.  Starts bench/targets/gated.py (one thread; 30 frames deep; 75% of
its units in ``heavy``, 25% in ``light``, the same code under two names), attaches in this
process and calls ``PythonProcess.sample_threads()`` back to back, as spyrec does at "max".
Each walk is timed and filed under the innermost function of the walk before and of its own.
A walk costs more when the stack changed since the last one (new frames are parsed instead of
taken from the last walk), so at "max" the next sample comes later after a state the target
has just entered: short-lived states are sampled less than their share of time.
"""

import argparse
import statistics
import time

from bench.common import DEFAULT_PYTHON, SID, Target, command_line, kill, python_help, sid_root


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--python", default=DEFAULT_PYTHON,
                       help=python_help(default=DEFAULT_PYTHON))
    where.add_argument("--sid-root", action="store_true",
                       help="python3.15 in the sid root (%s)" % sid_root())
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    from spyrec.interpreter import PythonProcess

    target = Target.chosen(SID if args.sid_root else args.python, sid_root())
    ready, proc = target.start(["--no-gate", "--seconds", str(args.seconds + 5)])
    names = {}
    costs = {}
    try:
        time.sleep(0.3)
        with PythonProcess.attach(ready["pid"]) as process:
            previous = None
            clock = time.perf_counter_ns
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                start = clock()
                stacks = process.sample_threads()
                cost = clock() - start
                frames = stacks[0].frames if stacks else ()
                if frames and frames[0][0] not in names:
                    names[frames[0][0]] = process.codes.describe(*frames[0]).name
                leaf = names[frames[0][0]] if frames else "-"
                costs.setdefault((previous, leaf), []).append(cost)
                previous = leaf
    finally:
        kill(proc)
    total = sum(len(v) for v in costs.values())
    print("Command: `%s` (%s)\n" % (command_line("bench.bench_walk_costs"), target.label))
    print("| innermost function: walk before -> this walk | walks | share | median cost (µs) |")
    print("|---|---:|---:|---:|")
    for (before, now), values in sorted(costs.items(), key=lambda kv: -len(kv[1]))[:8]:
        print("| %s -> %s | %d | %.1f%% | %.1f |" % (before, now, len(values),
                                                   100 * len(values) / total,
                                                   statistics.median(values) / 1e3))


if __name__ == "__main__":
    main()
