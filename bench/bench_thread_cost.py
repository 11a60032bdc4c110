"""What threads cost a recorder: spyrec, py-spy and Austin on 1 to 1,000 threads, idle and busy.

    .venv/bin/python -m bench.bench_thread_cost [--python PY] [--idle 1,10,100,200,500,1000]
                                                [--busy 1,2,4,10] [--tools spyrec,py-spy,austin]
                                                [--rate 1000] [--seconds 6]

Each measurement starts tests/targets/many_threads.py, with N threads blocked for good and one
thread busy (``--idle``), or N threads busy, sharing the GIL (``--busy``: a process of a
hundred CPU-bound threads takes minutes to start them, the GIL passing between them in turn,
and is not what programs look like), and records it for
``--seconds`` at ``--rate`` with one tool, attached by PID, every tool asked for idle threads
too (spyrec always records them; ``py-spy --idle``; Austin by default).  Printed per tool:

* recorder CPU: the tool's CPU time (all its threads, from schedstat) over the middle of the
  recording (from 1.5 s in to 0.5 s before its end: start-up and attaching left out), in cores;
* busy rate: samples whose innermost function is the target's ``busy``, per busy thread and
  second of recording, the rate the work was actually sampled at;
* round: spyrec's mean wall time of a round, from its trailer (the peers do not say).

The target and the recorder share the machine: on 2 cores, busy threads and the recorder
compete for them, which the busy rate shows.  Not a unit test.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import peers
from bench.common import interpreter, kill, python_help, task_cpu_ns, test_target

TARGET = test_target("many_threads.py")
#: The recorder's CPU is measured from this long after it starts to this long before its end.
SETTLE_S, TAIL_S = 1.5, 0.5


def commands(tool, pid, rate, seconds, out):
    interval_us = str(max(1, int(round(1e6 / rate))))
    if tool == "spyrec":
        return [sys.executable, "-m", "spyrec", "-q", "-o", out, "-r", str(rate), "-d",
                str(seconds), "-p", str(pid)]
    if tool == "py-spy":
        return [peers.find_peer("py-spy"), "record", "--idle", "-r", str(rate), "-d",
                str(seconds), "-f", "raw", "-o", out, "-p", str(pid)]
    if tool == "austin":
        return [peers.find_peer("austin"), "-b", "-i", interval_us, "-x", str(int(seconds)), "-o",
                out, "-p", str(pid)]
    raise ValueError(tool)


def parse(tool, out):
    if tool == "spyrec":
        return peers.parse_spy(out)
    if tool == "py-spy":
        return peers.parse_collapsed(out, "pyspy")
    return peers.parse_mojo(out)


def measure(python, tool, threads, kind, rate, seconds):
    sleepers, busy = (threads, 1) if kind == "idle" else (0, threads)
    target = subprocess.Popen([python, "-u", TARGET, str(seconds + 30), str(sleepers), str(busy)],
                              stdout=subprocess.PIPE)
    try:
        pid = json.loads(target.stdout.readline())["pid"]
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "out")
            started = time.monotonic()
            recorder = subprocess.Popen(commands(tool, pid, rate, seconds, out),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(SETTLE_S)
            cpu_before, at_before = task_cpu_ns(recorder.pid), time.monotonic()
            time.sleep(max(0.0, started + seconds - TAIL_S - time.monotonic()))
            cpu_after, at_after = task_cpu_ns(recorder.pid), time.monotonic()
            _, err = recorder.communicate(timeout=seconds + 60)
            if recorder.returncode != 0:
                return {"error": err.decode(errors="replace").strip().splitlines()[-1:]}
            parsed = parse(tool, out)
    finally:
        kill(target)
    cores = None
    if cpu_before is not None and cpu_after is not None:
        cores = (cpu_after - cpu_before) / 1e9 / (at_after - at_before)
    trailer = parsed.extra.get("trailer") or {}
    cost = trailer.get("sampling_cost_ns")
    return {"cores": cores, "busy_rate": parsed.leaves.get("busy", 0) / busy / seconds,
            "round_ms": cost[1] / 1e6 if cost else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, type=interpreter,
                        help=python_help())
    parser.add_argument("--idle", default="1,10,100,200,500,1000",
                        help="idle thread counts (next to one busy thread)")
    parser.add_argument("--busy", default="1,2,4,10", help="busy thread counts")
    parser.add_argument("--tools", default="spyrec,py-spy,austin")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    tools = [tool for tool in args.tools.split(",")
             if tool == "spyrec" or peers.find_peer(tool) is not None]
    print("rate %d Hz, %.0f s each, target %s" % (args.rate, args.seconds, args.python))
    print("| threads | kind | " + " | ".join(
        "%s CPU (cores) | %s busy rate (/s)" % (tool, tool) for tool in tools)
        + " | spyrec round (ms) |")
    print("|---:|---|" + "---:|---:|" * len(tools) + "---:|")
    for kind, counts in (("idle", args.idle), ("busy", args.busy)):
        for threads in [int(n) for n in counts.split(",") if n]:
            cells, round_ms = [], None
            for tool in tools:
                result = measure(args.python, tool, threads, kind, args.rate, args.seconds)
                if "error" in result:
                    cells += ["failed: %s" % " ".join(result["error"]), ""]
                    continue
                cells += ["%.2f" % result["cores"] if result["cores"] is not None else "-",
                          "%.0f" % result["busy_rate"]]
                if tool == "spyrec":
                    round_ms = result["round_ms"]
            print("| %d | %s | %s | %s |" % (threads, kind, " | ".join(cells),
                                           "%.2f" % round_ms if round_ms is not None else "-"))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
