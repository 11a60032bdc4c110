"""What copying stacks at interrupts costs (spyrec --bpf), next to reading them from outside.

    .venv/bin/python -m bench.bench_stack_copies [--python 3.9,3.12,...] [--seconds 4]
                                                 [--rate 1000] [--depth 8,60]

Not part of the unit tests; needs root.  For each Python label of tests/pythons.py and each
tree depth, starts tests/targets/visitor.py (recursive generators: a stack of depth + 4
frames that changes every microsecond; three children a node, one past depth 12) and records
it with ``spyrec --no-bpf`` and then ``spyrec --bpf``, SECONDS each at RATE.  For each: the
recorder's mean round cost and rate (the recording's trailer) and the share of samples with a
wrong stack (``work`` under another number of ``visit`` frames).  With ``--bpf`` also the
program's own cost as the kernel counts it with ``kernel.bpf_stats_enabled`` on (set for the
run): its runs and mean time per run (a tick of a thread the recorder has not walked yet
costs a lookup and returns), and the share of samples copied.
"""

import argparse
import collections
import os
import subprocess
import sys
import threading
import time

from bench.common import command_line
from spyrec import bpf
from spyrec.stackcapture import PROGRAM_NAME
from tests.pythons import ALL_SUPPORTED, python_for, running_target
from spyformat.reader import read_recording

STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def copied(stderr: str) -> int:
    for part in stderr.replace(";", ",").split(","):
        if part.strip().endswith("stacks copied at interrupts"):
            return int(part.split()[0])
    return 0


def load(path: str):
    with open(path, "rb") as f:
        return read_recording(f)


def wrong_share(rec, visits: int) -> float:
    """Share of ``work``'s samples under another number of ``visit`` frames than the tree's."""
    names_of = [rec.strings[i] for i in rec.frames["name"]]
    counts = collections.Counter(rec.samples["stack"].tolist())
    work = wrong = 0
    for stack_id, n in counts.items():
        names = [names_of[i] for i in rec.stacks[stack_id]]
        if "work" in names:
            work += n
            wrong += n * (names.count("visit") != visits)
    return wrong / work if work else float("nan")


class ProgramWatch(threading.Thread):
    """Polls the program's run count and time while the recorder runs (it is gone after)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.last = None
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.2):
            found = bpf.program_stats(PROGRAM_NAME)
            if found is not None:
                self.last = found


def measure(label: str, depth: int, args) -> str:
    cells = []
    for flag in ("--no-bpf", "--bpf"):
        with running_target(python_for(label), "visitor.py", str(args.seconds + 30),
                            str(depth), "20", "3" if depth <= 12 else "1") as target:
            visits = target.info["visits"]
            out = "/tmp/bench_stack_copies.spy"
            watch = ProgramWatch()
            watch.start()
            result = subprocess.run(
                [sys.executable, "-m", "spyrec", "-o", out, "-p", str(target.pid), "-d",
                 str(args.seconds), "-r", str(args.rate), flag],
                capture_output=True, text=True, timeout=args.seconds + 60)
            watch.done.set()
            watch.join()
        if result.returncode:
            return "| %s | %d | failed: %s |" % (label, depth, result.stderr.strip()[:120])
        rec = load(out)
        trailer = rec.trailer
        rounds = trailer["ticks"] / (trailer["duration_ns"] / 1e9)
        samples = len(rec.samples["stack"])
        cells.append("%.0f µs, %.0f/s, %.1f%%" % (trailer["sampling_cost_ns"][1] / 1e3, rounds,
                                                 100 * wrong_share(rec, visits)))
        if flag == "--bpf":
            runs, ns = watch.last or (0, 0)
            cells.append("%d runs, %.2f µs each" % (runs, ns / runs / 1e3 if runs else 0))
            cells.append("%.0f%%" % (100 * copied(result.stderr) / samples))
        os.unlink(out)
    return "| %s | %d | %s |" % (label, depth + 4, " | ".join(cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.9,3.12,3.15")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--depth", default="8,60", help="tree depths (frames: depth + 4)")
    args = parser.parse_args()
    with open(STATS_SYSCTL) as f:
        before = f.read().strip()
    with open(STATS_SYSCTL, "w") as f:
        f.write("1")
    try:
        print("Command: `%s`\n" % command_line("bench.bench_stack_copies"))
        print("| Python | frames | `--no-bpf`: round cost, rounds, wrong stacks | `--bpf`: the same "
              "| the program in the kernel | samples copied |")
        print("|---|---:|---|---|---|---:|")
        for label in args.python.split(","):
            if label.strip() not in ALL_SUPPORTED:
                continue
            for depth in map(int, args.depth.split(",")):
                print(measure(label.strip(), depth, args), flush=True)
                time.sleep(0.5)
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(before)


if __name__ == "__main__":
    main()
