"""A program slowed by its recorder on a busy machine: time blocked behind the recorder's reads.

    .venv/bin/python -m bench.bench_under_load [--python PY] [--busy 2] [--runs 3]
                                                [--load spin|wakers|recorder|threads]
                                                [--iterations 30000] [--rate 1000]
                                           [--profilers spyrec,spyrec-realtime,austin,py-spy]
                                                [--spyrec DIR]

Not part of the unit tests.  Loads the machine with other work (``--load``: BUSY shell loops
that spin; BUSY processes waking every 200 µs; BUSY CPU-bound Python processes each recorded
by py-spy at 1 kHz, another recorder; or one Python process with BUSY threads hashing outside
the GIL, a CPU-bound multi-threaded neighbour), then runs bench/targets/mapper.py (Python
work between ``mmap`` and ``munmap`` calls), or with ``--target black`` black reformatting
``_pydecimal.py`` (deep generator stacks that change every microsecond: costly rounds), alone
and with each profiler attached to it (``-p PID``), in turns, RUNS times (``spyrec-realtime``:
``spyrec --realtime``).  The target reports its wall time, CPU time, time waiting for a CPU
and time blocked from /proc/self/schedstat; the table gives the medians.  ``--spyrec DIR``
records with the ``spyrec`` package found in DIR instead (an older checkout, ``git archive
REV spyrec | tar -x -C DIR``).
A recorder that reads the target's memory holds the target's ``mmap_lock`` while the kernel
pins the pages it copies, so a recorder switched away from its CPU right then keeps every
``mmap`` and ``munmap`` of the target waiting.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench.common import BLACK_TIMED, MAPPER, REPO, TIMED_RUN, command_line, interpreter, python_help
from bench.peers import Austin, PySpy, Spyrec, find_peer


#: Each kind of load: the command of one of its BUSY processes.
WAKER = "import time\nwhile True:\n    time.sleep(0.0002)"
SPINNER = "while True:\n    sum(range(1000))"
HASHERS = ("import hashlib, sys, threading\n"
           "def hash_forever():\n"
           "    block = bytes(1 << 20)\n"
           "    while True:\n"
           "        hashlib.sha256(block).digest()\n"
           "threads = [threading.Thread(target=hash_forever) for _ in range(int(sys.argv[1]))]\n"
           "[t.start() for t in threads]\n"
           "[t.join() for t in threads]")


def start_load(kind, count, work):
    """The processes that keep the machine busy (see the module docstring)."""
    if kind == "spin":
        return [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(count)]
    if kind == "wakers":
        return [subprocess.Popen([sys.executable, "-c", WAKER]) for _ in range(count)]
    if kind == "threads":
        return [subprocess.Popen([sys.executable, "-c", HASHERS, str(count)])]
    started = []
    for i in range(count):  # "recorder": CPU-bound programs, each under py-spy
        spinner = subprocess.Popen([sys.executable, "-c", SPINNER])
        started.append(spinner)
        started.append(subprocess.Popen(
            PySpy(find_peer("py-spy"), nonblocking=False).command(
                spinner.pid, 1000, os.path.join(work, "load-%d.txt" % i)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return started


def recorder(name, pid, rate, out):
    """The command that records ``pid`` until it exits."""
    if name in ("spyrec", "spyrec-realtime"):
        return Spyrec(sys.executable).command(pid, rate, out) + (
            ["--realtime"] if name == "spyrec-realtime" else [])
    if name == "austin":
        return Austin(find_peer("austin")).command(pid, rate, out)
    if name == "py-spy":
        return PySpy(find_peer("py-spy"), nonblocking=False).command(pid, rate, out)
    raise ValueError(name)


def target_command(python, args, result):
    """The target: mapper.py, or black reformatting a file of the standard library."""
    if args.target == "black":
        source = subprocess.run([python, "-c", "import _pydecimal; print(_pydecimal.__file__)"],
                                capture_output=True, text=True, check=True).stdout.strip()
        return [python, TIMED_RUN, result, BLACK_TIMED, source]
    return [python, TIMED_RUN, result, MAPPER, str(args.iterations)]


def one_run(python, name, args, work):
    result = os.path.join(work, "result.jsonl")
    if os.path.exists(result):
        os.unlink(result)
    target = subprocess.Popen(target_command(python, args, result), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    recorder_cpu = 0.0
    if name != "alone":
        time.sleep(0.05)
        rec = subprocess.Popen(recorder(name, target.pid, args.rate, os.path.join(work, "out")),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
                               env=dict(os.environ, PYTHONPATH=args.spyrec))
        usage = os.wait4(rec.pid, 0)[2]
        rec.returncode = 0  # reaped here
        recorder_cpu = usage.ru_utime + usage.ru_stime
    target.wait()
    with open(result) as f:
        return dict(json.loads(f.read()), recorder=recorder_cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, type=interpreter,
                        help=python_help())
    parser.add_argument("--busy", type=int, default=2, help="how many of --load beside it")
    parser.add_argument("--load", choices=("spin", "wakers", "recorder", "threads"),
                        default="spin", help="what keeps the machine busy")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30000)
    parser.add_argument("--target", choices=("mapper", "black"), default="mapper",
                        help="mapper.py, or black_timed.py reformatting _pydecimal.py (--python "
                             "then names a Python with black installed in pure Python)")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--profilers", default="spyrec,spyrec-realtime,austin,py-spy")
    parser.add_argument("--spyrec", default=REPO,
                        help="directory holding the spyrec package")
    args = parser.parse_args()
    names = ["alone"] + [n for n in args.profilers.split(",")
                         if n.startswith("spyrec") or find_peer(n)]
    got = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as work:
        loads = start_load(args.load, args.busy, work)
        try:
            time.sleep(1)
            for _ in range(args.runs):
                for name in names:
                    got[name].append(one_run(args.python, name, args, work))
        finally:
            for load in loads:
                load.kill()
                load.wait()
    print("Command: `%s`; %s, load %s x %d, %d runs, medians (s)\n"
          % (command_line("bench.bench_under_load"), args.target, args.load, args.busy, args.runs))
    print("| run | wall | CPU | waiting for a CPU | blocked | recorder's CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        print("| %s | %s |" % (name, " | ".join(
            "%.2f" % statistics.median(r[key] for r in got[name])
            for key in ("wall", "cpu", "wait", "blocked", "recorder"))))


if __name__ == "__main__":
    main()
