"""How far walks of a running program are from walks of the same program stopped.

    .venv/bin/python -m bench.bench_live_skew [--python 3.8,3.11,...] [--walks 4000]
                                                [--target visitor|tokens|json]
                                                [--work 20] [--depth 8] [--fan 3] [--copies]

Not part of the unit tests.  Starts a target under each Python label of tests/pythons.py,
attaches in this process and walks its thread WALKS times, running and stopped (SIGSTOP) by
turns (tests/stopped.py).  The stopped walks are the reference: the program holds still while
they read it.  Targets: tests/targets/visitor.py (recursive generators that call a short
``work`` at the leaves: the stack changes every microsecond or so; ``--depth``, ``--work``,
``--fan`` are its arguments), generators.py's ``via_tokens`` (a ``for`` over a generator, both
calling ``work``) and json_rows.py (``json.loads`` in a loop).  For each Python it prints the
total variation distance (0: the same distribution, 1: disjoint) between the running and the
stopped walks' innermost (function, line), innermost function and whole stack, the share of
walks with a wrong stack (visitor.py: ``work`` under another number of ``visit`` frames than
the tree's depth, or not rooted at ``<module>``), the torn share of each kind, and the three
lines whose shares differ most.  With ``--copies`` the running walks take the stack the kernel
copied at the thread's latest CPU-clock interrupt (spyrec.stackcapture, 10 kHz), and the table
gives their share.
"""

import argparse
import os

from bench.common import command_line
from tests.pythons import (ALL_SUPPORTED, ROOTED, RootedPython, interpreter_path,
                           running_target, sid_root)
from tests.stopped import alternate_walks, by, distance, wrong_visit


#: Copies a second of a thread running all along (the CPU-clock period floor): one is there
#: for nearly every running walk.
COPY_RATE_HZ = 10_000


def measure(label: str, args) -> str:
    python = interpreter_path(label)
    if label not in ROOTED and not os.path.exists(python):
        return "| %s | not installed (%s) | | | | | | | |" % (label, python)
    if isinstance(python, RootedPython) and not os.path.isdir(sid_root()):
        return "| %s | no sid root | | | | | | | |" % label
    from spyrec.interpreter import PythonProcess
    target_args = {"visitor": ("visitor.py", "600", str(args.depth), str(args.work),
                               str(args.fan)),
                   "tokens": ("generators.py", "600", "via_tokens"),
                   "json": ("json_rows.py", "600")}[args.target]
    with running_target(python, *target_args) as target:
        visits = target.info.get("visits")
        with PythonProcess.attach(target.pid) as process:
            process.sample_threads()
            if args.copies:
                process.start_capture(COPY_RATE_HZ)
            seen = alternate_walks(process, target.pid, args.walks, copies=args.copies)
            copied = process.walker.captured_stacks
    running, torn_running, _ = seen["running"]
    stopped, torn_stopped, _ = seen["stopped"]
    n_run, n_stop = sum(running.values()), sum(stopped.values())

    def function(walk):
        return walk[0][-1] if walk[0] else "-"

    def innermost(walk):
        return "%s:%d" % (function(walk), walk[1])

    lines_run, lines_stop = by(running, innermost), by(stopped, innermost)
    gaps = sorted(set(lines_run) | set(lines_stop),
                  key=lambda k: -abs(lines_run[k] / n_run - lines_stop[k] / n_stop))[:3]
    def wrong(walks, n):
        if visits is None:
            return "-"
        return "%.1f%%" % (100 * sum(k for w, k in walks.items() if wrong_visit(w, visits)) / n)

    return "| %s | %.3f | %.3f | %.3f | %s / %s | %.1f%% / %.1f%% | %s | %.0f%% |" % (
        label, distance(lines_run, lines_stop),
        distance(by(running, function), by(stopped, function)),
        distance(by(running, lambda w: w[0]), by(stopped, lambda w: w[0])),
        wrong(running, n_run), wrong(stopped, n_stop),
        100 * torn_running / n_run, 100 * torn_stopped / n_stop,
        ", ".join("`%s` %+.1f" % (k, 100 * (lines_run[k] / n_run - lines_stop[k] / n_stop))
                  for k in gaps), 100 * copied / n_run)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=",".join(label for label in ALL_SUPPORTED if label != "venv"),
                        help="comma-separated labels of tests/pythons.py")
    parser.add_argument("--walks", type=int, default=4000)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--target", choices=("visitor", "tokens", "json"), default="visitor")
    parser.add_argument("--work", type=int, default=20, help="steps of work's loop at a leaf")
    parser.add_argument("--fan", type=int, default=3, help="children of each visited node")
    parser.add_argument("--copies", action="store_true",
                        help="running walks from copies made at interrupts (eBPF)")
    args = parser.parse_args()
    print("Command: `%s`\n" % command_line("bench.bench_live_skew"))
    print("| Python | line | function | stack | wrong stacks, running / stopped "
          "| torn, running / stopped | lines most apart (points) | running walks copied |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for label in args.python.split(","):
        print(measure(label.strip(), args), flush=True)


if __name__ == "__main__":
    main()
