"""Native frames of threads that do not run all along: how many of their samples at work have
them, under ``spyrec --native``.

    .venv/bin/python -m bench.bench_native_threads [--python PY] [--rate 1000] [--seconds 4]
                                                   [--runs 3]

Three targets from tests/targets, each recorded ``--runs`` times by PID: cpu_then_wait.py (one
thread working 1.5 ms and sleeping 2 ms by turns: the main thread's samples in ``compute``),
churn.py (four workers that live a few milliseconds each: the samples of the threads other
than the main one, found running) and requests.py (a thread per request that naps and works
about 20 ms: the samples of the request threads found running).  A sample at work without
native frames is one whose copy did not come.  Per target, the median over the runs of the
share of those samples with native frames, and the samples delivered a second.  Not a unit
test; needs root.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import spyanalyze
from bench.common import command_line, interpreter, kill, python_help, read_line, test_target


def at_work_with_native(path, main_tid, only_main):
    """(samples at work, those with native frames) of a recording: the main thread's in
    ``compute`` (``only_main``), else the other threads' found running."""
    rec = spyanalyze.load(path, all_native=True)
    frames, stacks, samples = rec.frames, rec.stacks, rec.samples
    kinds = frames["kind"].astype(str).tolist()
    names = frames["name"].astype(str).tolist()
    native, leaf = {}, {}
    for stack, ids in stacks["frames"].items():
        native[stack] = any(kinds[f] == "native" for f in ids)
        python = [names[f] for f in ids if kinds[f] not in ("native", "kernel")]
        leaf[stack] = python[-1] if python else None
    if only_main:
        chosen = samples[samples["tid"] == main_tid]
        chosen = chosen[chosen["stack"].map(leaf) == "compute"]
    else:
        chosen = samples[(samples["tid"] != main_tid) & ~samples["idle"]]
    return len(chosen), int(chosen["stack"].map(native).sum())


def one(python, name, args, only_main, rate, seconds, workdir):
    log = os.path.join(workdir, "requests.log")
    target = subprocess.Popen([python, test_target(name), "60"] + [a.format(log=log) for a in args],
                              stdout=subprocess.PIPE, text=True)
    try:
        main_tid = json.loads(read_line(target, 10))["main"]["native_id"]
        out = os.path.join(workdir, "out.spy")
        subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out, "-p", str(target.pid),
                        "-d", str(seconds), "-r", str(rate), "--native"], check=True)
    finally:
        kill(target)
    at_work, native = at_work_with_native(out, main_tid, only_main)
    return at_work, native


TARGETS = (("cpu_then_wait.py", [], True, "one thread, 1.5 ms of work then 2 ms asleep"),
           ("churn.py", ["4"], False, "four workers living a few ms each"),
           ("requests.py", ["{log}"], False, "a thread per request"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default="3.12", help=python_help(default="3.12"))
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    python = interpreter(args.python)
    print("Command: %s" % command_line("bench.bench_native_threads"))
    print("Targets under %s, %g s at %d Hz, median of %d runs" % (python, args.seconds, args.rate,
                                                                 args.runs))
    print()
    print("| target | threads | samples at work | with native frames (runs' range) |")
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as workdir:
        for name, extra, only_main, what in TARGETS:
            runs = [one(python, name, extra, only_main, args.rate, args.seconds, workdir)
                    for _ in range(args.runs)]
            shares = [native / max(1, at_work) for at_work, native in runs]
            print("| %s | %s | %d | %.1f%% (%.1f to %.1f%%) |"
                  % (name, what, statistics.median(a for a, _ in runs),
                     100 * statistics.median(shares), 100 * min(shares), 100 * max(shares)))


if __name__ == "__main__":
    main()
