"""A program that imports short modules one after another: the share of samples in the modules'
bodies, next to the program's own clock, and whether they name the module that ran, under
spyrec and py-spy.

    .venv/bin/python -m bench.bench_import_shares [--python PY] [--rate 500] [--seconds 3]
                                                  [--runs 2]

Not a unit test; needs root (spyrec's default mode) and py-spy.  tests/targets/imports.py
imports 20 modules over and over, each body computing for half a millisecond, and times the
bodies itself.  Each run records it by PID with spyrec (default mode, then ``--no-bpf``) and
with ``py-spy --nonblocking`` (which reads from outside as ``--no-bpf`` does), and prints the
share of the samples whose stack holds a module body, with the bodies' share of the time by the
program's clock (spyrec: from its first sample to its last; py-spy, whose raw output has no
times: of the whole run), spyrec's torn share, and the share of spyrec's samples taken while a
body ran (by the program's clock) that name the module whose body it was.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile

from bench.common import command_line, interpreter, kill, python_help, read_line, test_target
from bench.peers import find_peer
from spyformat import SampleFlag, read_recording
from tests.module_bodies import BODY_FILE, body_truth


def spyrec_shares(path, own):
    """(samples, share in a module body, torn share, the program's own share, share of the
    samples in a body that name the module that ran) of a spyrec recording."""
    with open(path, "rb") as f:
        rec = read_recording(f)
    truth = body_truth(rec, own["spans"])
    torn = int(((rec.samples["flags"] & SampleFlag.TORN) != 0).sum())
    return (truth.samples, truth.in_bodies / max(1, truth.samples),
            torn / max(1, rec.sample_count), truth.own_share,
            truth.named_right / max(1, truth.timed))


def py_spy_shares(path, own):
    """(samples, share in a module body, None, the program's own share over its run, None)
    of py-spy's raw output."""
    total = body = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue  # (the rest of a frame's name that held a line break)
            total += int(count)
            body += int(count) if BODY_FILE in stack else 0
    return total, body / max(1, total), None, own["bodies_s"] / own["elapsed_s"], None


def one(python, profiler, rate, seconds, workdir):
    """What ``spyrec_shares`` or ``py_spy_shares`` gives of one recording."""
    target = subprocess.Popen([python, test_target("imports.py"), "60"],
                              stdout=subprocess.PIPE, text=True)
    try:
        read_line(target, 10)
        if profiler == "py-spy":
            out = os.path.join(workdir, "pyspy.txt")
            subprocess.run([find_peer("py-spy"), "record", "--nonblocking", "-r", str(rate),
                            "-d", str(int(seconds)), "-f", "raw", "-o", out,
                            "-p", str(target.pid)], check=True, capture_output=True)
            shares = py_spy_shares
        else:
            out = os.path.join(workdir, "out.spy")
            extra = ["--no-bpf"] if profiler == "spyrec --no-bpf" else []
            subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out, "-p", str(target.pid),
                            "-d", str(seconds), "-r", str(rate)] + extra, check=True)
            shares = spyrec_shares
        target.send_signal(signal.SIGUSR1)
        own = json.loads(read_line(target, 10))
    finally:
        kill(target)
    return shares(out, own)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default="3.12", help=python_help(default="3.12"))
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    python = interpreter(args.python)
    print("Command: %s" % command_line("bench.bench_import_shares"))
    print("tests/targets/imports.py under %s, %g s at %d Hz, %d runs each"
          % (python, args.seconds, args.rate, args.runs))
    print()
    print("| profiler | samples | in module bodies | the program's own share | torn "
          "| named after the module that ran |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.runs):
            for profiler in ("spyrec", "spyrec --no-bpf", "py-spy"):
                samples, body, torn, own, named = one(python, profiler, args.rate,
                                                      args.seconds, workdir)
                print("| %s | %d | %.1f%% | %.1f%% | %s | %s |"
                      % (profiler, samples, 100 * body, 100 * own,
                         "" if torn is None else "%.1f%%" % (100 * torn),
                         "" if named is None else "%.1f%%" % (100 * named)))


if __name__ == "__main__":
    main()
