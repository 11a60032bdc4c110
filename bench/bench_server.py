"""A thread-per-request web app served alone and under each profiler: requests served, and the
profiler's own CPU time.

    .venv/bin/python -m bench.bench_server --python /tmp/webapp/bin/python [--seconds 10]
                                           [--rate 1000] [--runs 2]

Not a unit test.  ``--python`` is an interpreter with Flask installed (bench/targets/flask_app.py
says how).  Each run starts the app and attaches a profiler for SECONDS at RATE: none,
``spyrec``, ``py-spy record`` and ``austin`` (each where installed: py-spy and Austin come with
the test extra), in turns, RUNS times.  Prints, per mode, the requests the app served (its own
count) as a share of the mean served alone, and the profiler's own CPU time (user + system, from
wait4) over its wall time, in cores, and the thread samples it wrote a second.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

from bench.common import BENCH, command_line
from bench.peers import find_peer, parse_collapsed, parse_mojo, parse_spy

APP = os.path.join(BENCH, "targets", "flask_app.py")
SPYREC = os.path.join(os.path.dirname(BENCH), ".venv", "bin", "spyrec")


def profilers(seconds, rate, out):
    """{mode: (argv without the PID, the bench.peers parser of its output)} of every profiler
    installed, attaching for SECONDS."""
    found = {"spyrec": ([SPYREC, "-o", out + ".spy", "-r", str(rate), "-d", str(seconds), "-p"],
                        parse_spy)}
    py_spy = find_peer("py-spy")
    if py_spy:
        found["py-spy"] = ([py_spy, "record", "--idle", "-r", str(rate), "-d", str(int(seconds)),
                            "-f", "raw", "-o", out + ".txt", "-p"],
                           lambda path: parse_collapsed(path, "pyspy"))
    austin = find_peer("austin")
    if austin:
        found["austin"] = ([austin, "-b", "-i", "%dus" % (1_000_000 // rate), "-x", str(int(seconds)),
                            "-o", out + ".mojo", "-p"], parse_mojo)
    return found


def run(python, seconds, profiler):
    """(requests served, the profiler's CPU seconds, its wall seconds, thread samples it wrote,
    idle ones included: py-spy runs with ``--idle``) of one run of the app, with ``profiler``
    (see ``profilers``) attached from its start, or alone."""
    app = subprocess.Popen([python, APP, str(seconds + 1)], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    cpu = wall = 0.0
    if profiler:
        start = time.monotonic()
        proc = subprocess.Popen(profiler[0] + [str(app.pid)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # its own time: the app is not its child
        if status:
            print("%s exited with status %#x" % (profiler[0][0], status))
        cpu, wall = usage.ru_utime + usage.ru_stime, time.monotonic() - start
    out, _ = app.communicate()
    served = [json.loads(line)["requests"] for line in out.splitlines() if '"requests"' in line]
    if not served:
        raise SystemExit("the app printed no count (is Flask installed for %s?)" % python)
    written = 0
    if profiler:
        argv, parse = profiler
        output = argv[argv.index("-o") + 1]
        written = parse(output).samples if os.path.exists(output) else 0
    return served[-1], cpu, wall, written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="an interpreter with Flask installed")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print("Command: %s" % command_line("bench.bench_server"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        modes = {"alone": None, **profilers(args.seconds, args.rate, os.path.join(tmp, "r"))}
        for _ in range(args.runs):
            for mode, profiler in modes.items():
                results.setdefault(mode, []).append(run(args.python, args.seconds, profiler))
    alone = statistics.mean(row[0] for row in results["alone"])
    print()
    print("| mode | requests served (share of alone) | profiler CPU (cores) | thread samples/s |")
    print("|---|---|---|---|")
    for mode, rows in results.items():
        served = ", ".join("%d (%.0f%%)" % (n, 100 * n / alone) for n, _, _, _ in rows)
        cores = ", ".join("%.2f" % (cpu / wall) for _, cpu, wall, _ in rows if wall)
        rates = ", ".join("%.0f" % (n / wall) for _, _, wall, n in rows if wall)
        print("| %s | %s | %s | %s |" % (mode, served, cores, rates))


if __name__ == "__main__":
    main()
