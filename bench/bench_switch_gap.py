"""What the copies made as threads leave their CPUs cost a program that switches all the time.

    .venv/bin/python -m bench.bench_switch_gap [--python 3.12] [--rates 100,1000] [--native]
        [--spyrec DIR] [--seconds 2]

Not part of the unit tests; needs root.  tests/targets/handoffs_pipe.py hands a byte back and
forth between two threads through pipes, each thread leaving its CPU tens of thousands of
times a second; spyrec records it by PID and, for ``--seconds`` in the middle of the
recording, the kernel counts the runs of spyrec's programs and their time
(``kernel.bpf_stats_enabled``, set for the run; the interrupts and the kernel's own samples
with ``--native`` are not in it).  Printed per rate: program runs a second, time a run, the
share of a CPU they take, and the samples copied at interrupts (from spyrec's status line).
``--spyrec DIR``: run the spyrec of another checkout (``python -m spyrec`` from DIR), to set
two versions side by side.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.common import command_line, interpreter, python_help
from spyrec import bpf
from spyrec.stackcapture import PROGRAM_NAME

TARGET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                      "targets", "handoffs_pipe.py")
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def one_run(python, rate, native, seconds, checkout, out):
    target = subprocess.Popen([python, TARGET, str(seconds + 8)], stdout=subprocess.PIPE,
                              text=True)
    try:
        pid = json.loads(target.stdout.readline())["pid"]
        recorder = subprocess.Popen(
            [sys.executable, "-m", "spyrec", "-o", out, "-p", str(pid), "-d", str(seconds + 3),
             "-r", str(rate), *(["--native"] if native else [])],
            cwd=checkout, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)  # (started and sampling)
        before, start = bpf.program_stats(PROGRAM_NAME), time.monotonic()
        time.sleep(seconds)
        after, end = bpf.program_stats(PROGRAM_NAME), time.monotonic()
        _, status = recorder.communicate(timeout=60)
    finally:
        target.kill()
        target.wait()
    runs = (after[0] - before[0]) / (end - start)
    ns = (after[1] - before[1]) / (end - start)
    copied = status.split("stacks copied")[0].rsplit(",", 1)[-1].strip()
    return runs, ns, copied


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default="3.12", help=python_help(default="3.12"))
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--native", action="store_true")
    parser.add_argument("--spyrec", default=None, help="a checkout whose spyrec is run")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    python = interpreter(args.python)
    checkout = args.spyrec or os.getcwd()
    with open(STATS_SYSCTL) as f:
        was = f.read().strip()
    rows = []
    try:
        with open(STATS_SYSCTL, "w") as f:
            f.write("1")
        with tempfile.TemporaryDirectory() as workdir:
            for rate in (int(r) for r in args.rates.split(",")):
                rows.append((rate,) + one_run(python, rate, args.native, args.seconds, checkout,
                                              os.path.join(workdir, "run.spy")))
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(was)
    print("Command: %s" % command_line("bench.bench_switch_gap"))
    print("tests/targets/handoffs_pipe.py under %s, spyrec%s from %s"
          % (python, " --native" if args.native else "", checkout))
    print("| rate | program runs/s | µs a run | CPU share | stacks copied at interrupts |")
    print("|---|---:|---:|---:|---:|")
    for rate, runs, ns, copied in rows:
        print("| %d Hz | %.0f | %.2f | %.1f%% | %s |" % (rate, runs, ns / max(runs, 1) / 1e3,
                                                       ns / 1e7, copied))


if __name__ == "__main__":
    main()
