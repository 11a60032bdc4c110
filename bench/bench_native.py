"""Native frames next to the peers: ``spyrec --native`` against ``py-spy record --native`` and
``austinp`` (with and without ``-k``), on one target, in one run; and spyrec without native
frames (its default, and ``--no-bpf``), for what the native frames add.

    .venv/bin/python -m bench.bench_native [--python PY] [--rates 100,1000] [--seconds 5]
                                           [--runs 3] [--profilers "spyrec,spyrec --native"]

bench/targets/native_work.py spends one thread's time in zlib and in ``sorted`` calling a
Python key back, and counts its loops per 100 ms.  Each run starts it once and attaches every
profiler by PID in turn, for ``--seconds`` each, with the target alone a second less before
each and after the last: a profiler's slowdown compares the loops done while it was attached (its
first second left out) with the windows alone on either side, in the same process.  Also per
profiler and rate, as medians over the runs (the slowdown also as a mean with its 95% interval,
which takes more runs than the peers' slowdowns allow: ``--profilers`` picks some): samples
delivered a second; invalid samples
(spyrec: torn ones, with --native also those left with Python frames only; py-spy: its
``Errors``; Austin: its ``invalid samples``); and the profiler's own CPU (user + system, from
its rusage) per sample.  Not a unit test.
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from bench.common import BENCH, command_line, interpreter, kill, mean_ci, python_help
from bench.peers import find_peer

TARGET = os.path.join(BENCH, "targets", "native_work.py")
WARM_S = 1.0  # the target runs alone this long before a profiler attaches
SETTLE_S = 1.0  # the profiler's first second (attaching, reading symbols) is left out
SLOT_S = 0.1  # the target's slot (native_work.SLOT_S)


def profilers():
    """name -> command(pid, rate, seconds, out) for every profiler found, and "interrupts
    only" (bench/interrupter.py: the CPU-clock interrupts spyrec's copies take, alone)."""
    found = {"none": None}
    found["interrupts only"] = lambda pid, rate, seconds, out: [
        sys.executable, "-m", "bench.interrupter", str(pid), str(rate), str(seconds)]
    for options in (["--no-bpf"], [], ["--native"]):
        found[" ".join(["spyrec"] + options)] = (
            lambda pid, rate, seconds, out, options=options: [
                sys.executable, "-m", "spyrec", "-o", out, "-p", str(pid), "-d", str(seconds),
                "-r", str(rate)] + options)
    pyspy = find_peer("py-spy")
    if pyspy:
        found["py-spy --native"] = lambda pid, rate, seconds, out: [
            pyspy, "record", "--native", "-p", str(pid), "-r", str(rate), "-d", str(int(seconds)),
            "-f", "raw", "-o", out]
    austinp = find_peer("austinp")
    if austinp:
        for kernel in (False, True):
            found["austinp -k" if kernel else "austinp"] = (
                lambda pid, rate, seconds, out, kernel=kernel: [
                    austinp, "-i", "%dus" % (1e6 / rate), "-x", str(int(seconds)), "-p", str(pid),
                    "-o", out] + (["-k"] if kernel else []))
    return found


def samples_and_invalid(name, stderr):
    """(samples delivered, invalid samples) from what the profiler printed."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", stderr)
    if name == "interrupts only":
        return 0, 0
    if name.startswith("spyrec"):
        total = int(re.search(r"spyrec: (\d+) samples", text).group(1))
        if "--native" not in name:  # its torn samples
            return total, round(total * float(re.search(r"([\d.]+)% errors", text).group(1)) / 100)
        native = re.search(r"(\d+) with native frames", text)
        return total, total - (int(native.group(1)) if native else 0)
    if name.startswith("py-spy"):
        found = re.search(r"Samples: (\d+) Errors: (\d+)", text)
        return int(found.group(1)), int(found.group(2))
    found = re.search(r"Error rate\s*:\s*(\d+)/(\d+)", text)
    return int(found.group(2)), int(found.group(1))


def one_run(python, found, rate, seconds, workdir):
    """One target process, every profiler attached in turn with the target alone between
    them: {name: row}.  A profiler's slowdown is measured against the windows alone just
    before and after it, in the same process (processes differ by several percent)."""
    names = [name for name in found if name != "none"]
    alone = seconds - SETTLE_S  # the window alone before each profiler, and after the last
    total = WARM_S + len(names) * (alone + seconds + 0.5) + alone + 1
    target = subprocess.Popen([python, TARGET, str(total)], stdout=subprocess.PIPE, text=True)
    rows, windows = {}, []
    try:
        pid = json.loads(target.stdout.readline())["pid"]
        begin = time.monotonic()
        time.sleep(WARM_S)
        for name in names:
            windows.append(("none", time.monotonic() - begin, alone))
            time.sleep(alone)
            out = os.path.join(workdir, "out")
            attached = time.monotonic() - begin
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = subprocess.run(found[name](pid, rate, seconds, out), capture_output=True,
                                    text=True, timeout=seconds + 60)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            samples, invalid = samples_and_invalid(name, result.stdout + result.stderr)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rows[name] = {"samples": samples, "invalid": invalid, "cpu_s": cpu}
            windows.append((name, attached + SETTLE_S, seconds - SETTLE_S - 0.2))
            time.sleep(0.5)  # the profiler gone
        windows.append(("none", time.monotonic() - begin, alone))
        slots = json.loads(target.stdout.readlines()[-1])["slots"]
    finally:
        kill(target)

    def loops(start, length):
        return statistics.mean(slots[int(start / SLOT_S) + 1:int((start + length) / SLOT_S)])

    for i, (name, start, length) in enumerate(windows):
        if name != "none":
            base = (loops(*windows[i - 1][1:]) + loops(*windows[i + 1][1:])) / 2
            rows[name]["slowdown"] = base / loops(start, length) - 1
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default="3.11", help=python_help(default="3.11"))
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profilers", help="these only, by name, comma-separated (default: all)")
    args = parser.parse_args()
    python = interpreter(args.python)
    found = profilers()
    if args.profilers:
        chosen = args.profilers.split(",")
        unknown = [name for name in chosen if name not in found]
        if unknown:
            parser.error("no profiler %s here (%s)" % (", ".join(unknown), ", ".join(found)))
        found = {name: found[name] for name in ["none"] + chosen}
    rates = [int(r) for r in args.rates.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as workdir:
        for run in range(args.runs):
            for rate in rates:
                for name, row in one_run(python, found, rate, args.seconds, workdir).items():
                    rows.setdefault((rate, name), []).append(row)
                    print("run %d %d Hz %s: %s" % (run + 1, rate, name, row), file=sys.stderr)
    print("Command: %s" % command_line("bench.bench_native"))
    print("Target: bench/targets/native_work.py under %s, %g s attached, median of %d runs"
          % (python, args.seconds, args.runs))
    print()
    print("| rate | profiler | target slowdown (runs' range) | mean, 95% interval | samples/s "
          "| invalid | profiler CPU per sample |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for rate in rates:
        for name in found:
            if name == "none":
                continue
            runs = rows[(rate, name)]
            slowdowns = [r["slowdown"] for r in runs]
            slowdown = statistics.median(slowdowns)
            per_s = statistics.median(r["samples"] / args.seconds for r in runs)
            invalid = statistics.median(r["invalid"] / max(1, r["samples"]) for r in runs)
            per_sample = statistics.median(r["cpu_s"] / max(1, r["samples"]) for r in runs)
            mean, half = mean_ci(slowdowns)
            sampled = ("%.0f | %.1f%% | %.0f µs" % (per_s, 100 * invalid, 1e6 * per_sample)
                       if per_s else "- | - | -")
            print("| %d Hz | %s | %+.1f%% (%+.0f to %+.0f%%) | %+.1f%% ± %.1f | %s |"
                  % (rate, name, 100 * slowdown, 100 * min(slowdowns), 100 * max(slowdowns),
                     100 * mean, 100 * half, sampled))


if __name__ == "__main__":
    main()
