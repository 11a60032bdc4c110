"""Native frames of a numpy/pandas program, next to ``py-spy record --native``: the share of
samples each function is in, by each profiler, on one running target.

    .venv/bin/python -m bench.bench_native_shares [--python PY] [--seconds 10] [--rate 200]
                                                  [--rounds 2] [--top 20] [--modes]

bench/targets/numpy_work.py (numpy and pandas: a BLAS matrix product, a sort, an FFT, a
group-by) runs once; the two profilers (with ``--modes``, also spyrec without native frames and
with ``--no-bpf``) attach to it by PID in turn, ``--rounds`` times each, in one order then the
other, so all see the same process.  Prints, for the heaviest functions, the share of
samples whose stack holds each (names only: the two label files and lines differently), and
the share of samples whose stack reaches ``<module>``.  A function a stripped library does not
name is left out: py-spy and spyrec name those differently.  The target times each of its four
phases itself: the last rows give each phase's share of the time by its own clock over the
windows each profiler recorded, next to the profiler's.  Not a unit test.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter

from bench.common import BENCH, command_line, interpreter, kill, python_help
from bench.peers import find_peer

TARGET = os.path.join(BENCH, "targets", "numpy_work.py")
#: The target's phases (bench/targets/numpy_work.py), timed by it.
PHASES = ("product", "sort", "spectrum", "grouped")
#: Functions no symbol names (each profiler shows them its own way), and the thread roots.
UNNAMED = re.compile(r"^(0x[0-9a-f]+|\?+|)$|^(process|thread) ")


def load_collapsed(path):
    """(total per function name, samples, samples rooted at <module>) of a collapsed file."""
    totals, samples, rooted = Counter(), 0, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            stack, count = line.rsplit(" ", 1)
            names = [re.sub(r"\s*\(.*\)$", "", frame.strip()) for frame in stack.split(";")]
            samples += int(count)
            rooted += int(count) if any(n.startswith("<module>") for n in names) else 0
            for name in set(names):
                if not UNNAMED.match(name):
                    totals[name] += int(count)
    return totals, samples, rooted


def record(name, pid, rate, seconds, workdir, index):
    """Record ``pid`` with tool ``name`` (``py-spy``, or ``spyrec`` and its options); the path
    of the collapsed stacks."""
    out = os.path.join(workdir, "%s-%d" % (name.replace(" ", ""), index))
    if name == "py-spy":
        command = [find_peer("py-spy"), "record", "--native", "-p", str(pid), "-r", str(rate),
                   "-d", str(int(seconds)), "-f", "raw", "-o", out + ".txt"]
        subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
        return out + ".txt"
    subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", out + ".spy", "-p", str(pid), "-d",
                    str(seconds), "-r", str(rate)] + name.split()[1:], capture_output=True,
                   text=True, timeout=seconds + 60, check=True)
    subprocess.run([sys.executable, "-m", "spyanalyze", "export", out + ".spy", "--format",
                    "collapsed", "-o", out + ".txt"], capture_output=True, text=True, check=True)
    return out + ".txt"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help=python_help(default="this one, whose venv has numpy and pandas"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--modes", action="store_true",
                        help="also spyrec's default mode and --no-bpf, against the target's clock")
    args = parser.parse_args()
    if find_peer("py-spy") is None:
        sys.exit("bench_native_shares: py-spy not found")
    python = interpreter(args.python)
    tools = ["py-spy", "spyrec --native"] + (["spyrec", "spyrec --no-bpf"] if args.modes else [])
    total_s = args.rounds * len(tools) * (args.seconds + 3) + 5
    target = subprocess.Popen([python, TARGET, str(total_s)], stdout=subprocess.PIPE, text=True)
    seen = {tool: [Counter(), 0, 0] for tool in tools}
    windows = {tool: [] for tool in tools}
    try:
        pid = json.loads(target.stdout.readline())["pid"]
        with tempfile.TemporaryDirectory() as workdir:
            for index in range(args.rounds):
                for name in (tools if index % 2 == 0 else tools[::-1]):
                    begin = time.monotonic_ns()
                    path = record(name, pid, args.rate, args.seconds, workdir, index)
                    windows[name].append(sampled_span(path) or (begin, time.monotonic_ns()))
                    totals, samples, rooted = load_collapsed(path)
                    seen[name][0].update(totals)
                    seen[name][1] += samples
                    seen[name][2] += rooted
        phases = json.loads(target.stdout.readlines()[-1])["phases"]
    finally:
        kill(target)
    (pt, pn, pr), (st, sn, sr) = seen["py-spy"], seen["spyrec --native"]
    print("# %s" % command_line("bench.bench_native_shares"))
    print("samples: py-spy %d, spyrec %d; reaching <module>: py-spy %.1f%%, spyrec %.1f%%"
          % (pn, sn, 100 * pr / max(pn, 1), 100 * sr / max(sn, 1)))
    names = sorted(set(pt) | set(st), key=lambda n: -max(pt[n] / max(pn, 1), st[n] / max(sn, 1)))
    print("| function | py-spy --native | spyrec --native | difference |")
    print("|---|---:|---:|---:|")
    for name in names[:args.top]:
        p, s = 100 * pt[name] / max(pn, 1), 100 * st[name] / max(sn, 1)
        print("| `%s` | %.1f%% | %.1f%% | %+.1f |" % (name, p, s, s - p))
    print()
    print("| phase | " + " | ".join("own clock, %s's windows | %s" % (tool, tool) for tool in tools)
          + " |")
    print("|---|" + "---:|---:|" * len(tools))
    own = {tool: own_shares(phases, spans) for tool, spans in windows.items()}
    for phase in PHASES:
        print("| `%s` | " % phase + " | ".join(
            "%.1f%% | %.1f%%" % (100 * own[tool][phase], 100 * seen[tool][0][phase] / max(seen[tool][1], 1))
            for tool in tools) + " |")


def sampled_span(path):
    """(first, last) sample of a spyrec recording on the monotonic clock; None for py-spy's
    files, which keep no times (the span of its run stands for them)."""
    spy = path[:-len(".txt")] + ".spy"
    if not os.path.exists(spy):
        return None
    import spyanalyze
    rec = spyanalyze.load(spy)
    origin = rec.header["start_mono_ns"]
    return origin + int(rec.samples["t"].min()), origin + int(rec.samples["t"].max())


def own_shares(phases, spans):
    """Each phase's share of the target's time within ``spans`` (monotonic ns), by its clock."""
    spent = Counter()
    for start, name, length in phases:
        for begin, end in spans:
            spent[name] += max(0, min(start + length, end) - max(start, begin))
    total = sum(spent.values()) or 1
    return {name: spent[name] / total for name in PHASES}


if __name__ == "__main__":
    main()
