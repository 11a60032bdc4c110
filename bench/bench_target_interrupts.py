"""The interrupts a target's CPU takes while spyrec records it: what its copies cost it.

    .venv/bin/python -m bench.bench_target_interrupts [--python 3.11] [--rate 1000]
                                                      [--seconds 5] [--rounds 2]

Not part of the unit tests; needs root and two CPUs.  A CPU-bound target runs alone on the
last CPU (``taskset``), the recorder on the first; each mode records it in turn, and the CPU's
interrupt counts of /proc/interrupts over the recording (a second alone before each) are
printed per second: local timer (LOC: the CPU-clock events that copy stacks, and the tick),
IRQ work (IWI: wake-ups the kernel raises for a ring's reader, and the turning off of an event
armed for one interrupt), function calls (CAL) and rescheduling (RES).  On a virtual machine
each costs the interrupted thread about as much as a timer interrupt ("What an interrupt
costs" in docs/benchmarks.md).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from bench.common import REPO, command_line, interpreter, kill, python_help

KINDS = ("LOC", "IWI", "CAL", "RES")
MODES = {"alone": None, "--no-bpf": ["--no-bpf"], "default": [], "--native": ["--native"]}


def counts(cpu):
    """Interrupts of each kind in ``KINDS`` the CPU has taken since boot."""
    found = {}
    with open("/proc/interrupts") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0].rstrip(":") in KINDS:
                found[parts[0].rstrip(":")] = int(parts[1 + cpu])
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.11", help=python_help(default="3.11"))
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("bench_target_interrupts: needs two CPUs")
    first, last = cpus[0], cpus[-1]
    python = interpreter(args.python)
    print("Command: `%s`\n" % command_line("bench.bench_target_interrupts"))
    print("Target: a `while True: pass` loop under %s on CPU %d, recorded at %d Hz for %g s; "
          "interrupts per second on its CPU\n" % (python, last, args.rate, args.seconds))
    print("| round | mode | %s |" % " | ".join(KINDS))
    print("|---:|---|" + "---:|" * len(KINDS))
    target = subprocess.Popen(["taskset", "-c", str(last), python, "-c", "while True: pass"])
    try:
        with tempfile.TemporaryDirectory() as work:
            time.sleep(1)
            for round_ in range(1, args.rounds + 1):
                for mode, options in MODES.items():
                    time.sleep(1)
                    before, began = counts(last), time.monotonic()
                    if options is None:
                        time.sleep(args.seconds)
                    else:
                        subprocess.run(["taskset", "-c", str(first), sys.executable, "-m", "spyrec",
                                        "-o", os.path.join(work, "run.spy"), "-p", str(target.pid),
                                        "-d", str(args.seconds), "-r", str(args.rate), "-q"]
                                       + options, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
                    took = time.monotonic() - began
                    after = counts(last)
                    print("| %d | %s | %s |" % (round_, mode, " | ".join(
                        "%.0f" % ((after[kind] - before[kind]) / took) for kind in KINDS)), flush=True)
    finally:
        kill(target)


if __name__ == "__main__":
    main()
