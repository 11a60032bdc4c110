"""A program that imports short modules one after another: the share of samples in the modules'
bodies, next to the program's own clock, under spyrec and py-spy.

    .venv/bin/python -m bench.bench_import_shares [--python PY] [--rate 500] [--seconds 3]
                                                  [--runs 2]

Not a unit test; needs root (spyrec's default mode) and py-spy.  tests/targets/imports.py
imports 20 modules over and over, each body computing for half a millisecond, and times the
bodies itself.  Each run records it by PID with spyrec (default mode, then ``--no-bpf``) and
with ``py-spy --nonblocking`` (which reads from outside as ``--no-bpf`` does), and prints the
share of the samples whose stack holds a module body, with the program's own share of time in
the bodies during that recording, and spyrec's torn share.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile

import spyanalyze
from bench.common import command_line, interpreter, kill, python_help, read_line, test_target
from bench.peers import find_peer
from spyformat import SampleFlag


def spyrec_shares(path):
    """(samples, share in a module body, torn share) of a spyrec recording."""
    rec = spyanalyze.load(path)
    files = rec.frames["file"].astype(str).tolist()
    body = {stack: any("short_module_" in files[f] for f in ids)
            for stack, ids in rec.stacks["frames"].items()}
    samples = rec.samples
    count = max(1, len(samples))
    torn = int(((samples["flags"] & SampleFlag.TORN) != 0).sum())
    return len(samples), float(samples["stack"].map(body).sum()) / count, torn / count


def py_spy_shares(path):
    """(samples, share in a module body, None) of py-spy's raw output."""
    total = body = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, count = line.rstrip("\n").rsplit(" ", 1)
            total += int(count)
            body += int(count) if "short_module_" in stack else 0
    return total, body / max(1, total), None


def one(python, profiler, rate, seconds, workdir):
    """(samples, body share, torn share or None, the program's own body share)."""
    target = subprocess.Popen([python, test_target("imports.py"), "60"],
                              stdout=subprocess.PIPE, text=True)
    try:
        read_line(target, 10)
        if profiler == "py-spy":
            out = os.path.join(workdir, "pyspy.txt")
            subprocess.run([find_peer("py-spy"), "record", "--nonblocking", "-r", str(rate),
                            "-d", str(int(seconds)), "-f", "raw", "-o", out,
                            "-p", str(target.pid)], check=True, capture_output=True)
            measured = py_spy_shares(out)
        else:
            out = os.path.join(workdir, "out.spy")
            extra = ["--no-bpf"] if profiler == "spyrec --no-bpf" else []
            subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out, "-p", str(target.pid),
                            "-d", str(seconds), "-r", str(rate)] + extra, check=True)
            measured = spyrec_shares(out)
        target.send_signal(signal.SIGUSR1)
        own = json.loads(read_line(target, 10))
    finally:
        kill(target)
    return measured + (own["bodies_s"] / own["elapsed_s"],)


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
    print("| profiler | samples | in module bodies | the program's own share | torn |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.runs):
            for profiler in ("spyrec", "spyrec --no-bpf", "py-spy"):
                samples, body, torn, own = one(python, profiler, args.rate, args.seconds,
                                               workdir)
                print("| %s | %d | %.1f%% | %.1f%% | %s |"
                      % (profiler, samples, 100 * body, 100 * own,
                         "" if torn is None else "%.1f%%" % (100 * torn)))


if __name__ == "__main__":
    main()
