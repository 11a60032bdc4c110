"""Recorder-benchmark target: a fixed amount of CPU-bound work at the bottom of a deep stack,
started on a "go" signal, timing itself and its own heavy/light split.

    python gated.py [--depth 30] [--threads 1] [--work UNITS | --seconds S] [--share 0.75]
                    [--no-gate]

1. Starts its worker threads (``--threads N``; with 1 the main thread does the work), each
   blocked on an event, then prints one JSON line ``{"ready": true, "pid": ..., "python": ...}``
   and waits for a line on standard input (``--no-gate``: starts at once).  A profiler attached
   meanwhile sees every thread before the measured work begins.
2. Does ``--work UNITS`` units (split evenly between the threads) or runs for ``--seconds``.
   A unit is one call from ``worker`` down a chain of ``descend`` frames to a leaf, ``heavy``
   or ``light``, that spins 1,000 iterations, so every sample of a busy thread has exactly
   ``--depth`` frames (counted from the thread's outermost frame).  Units go to ``heavy`` with
   probability-free scheduling so that ``--share`` of them (default 0.75) are heavy.
3. Prints its last line as JSON: ``{"elapsed": s, "cpu": s, "thread_seconds": s, "units": n, "heavy": s,
   "light": s, "heavy_share": x, "threads": n, "depth": d}``.  ``elapsed`` is the wall time of
   the work alone (the slowdown measure), ``cpu`` the process CPU time it took (immune to
   other load on the machine, blind to a profiler pausing the target), ``thread_seconds``
   the sum over worker threads of each one's own time from go to its last unit (threads do
   not all finish together); ``heavy``/``light`` are the wall seconds each thread spent in
   calls to each leaf, summed over threads, measured with ``perf_counter`` around every unit,
   so ``heavy_share`` is the ground truth a wall-clock sampler should find; ``preempted`` counts
   the times its threads were taken off a CPU while they could still run (involuntary
   context switches, ``ru_nivcsw``), what a profiler that competes for the CPUs adds to.

Plain Python that runs on 3.8+ (and inside a chroot: no imports outside the stdlib).
"""

import json
import os
import platform
import resource
import sys
import threading
import time

SPIN = 1000


def heavy(units):
    x = 0
    for _ in range(units):
        for i in range(SPIN):
            x += i * i
    return x


def light(units):
    x = 0
    for _ in range(units):
        for i in range(SPIN):
            x += i * i
    return x


def descend(depth, leaf):
    if depth <= 1:
        return leaf(1)
    return descend(depth - 1, leaf)


def frame_depth():
    """Frames on the caller's stack, the caller included."""
    frame = sys._getframe(1)
    n = 0
    while frame is not None:
        n += 1
        frame = frame.f_back
    return n


def worker(depth, share, units, deadline, out):
    chain = max(1, depth - frame_depth() - 1)   # worker + chain of descend + leaf = depth
    clock = time.perf_counter
    began = clock()
    spent = {"heavy": 0.0, "light": 0.0}
    count = heavies = 0
    while (units is None or count < units) and (deadline is None or time.monotonic() < deadline):
        if heavies < share * (count + 1):
            before = clock()
            descend(chain, heavy)
            spent["heavy"] += clock() - before
            heavies += 1
        else:
            before = clock()
            descend(chain, light)
            spent["light"] += clock() - before
        count += 1
    out.append((count, spent["heavy"], spent["light"], clock() - began))


def thread_main(go, depth, share, units, seconds, out):
    go.wait()
    deadline = time.monotonic() + seconds if seconds else None
    worker(depth, share, units, deadline, out)


def main(argv):
    gate = "--no-gate" not in argv
    argv = [a for a in argv if a != "--no-gate"]
    args = dict(zip(argv[::2], argv[1::2]))
    depth = int(args.get("--depth", 30))
    threads = int(args.get("--threads", 1))
    share = float(args.get("--share", 0.75))
    units = int(args["--work"]) if "--work" in args else None
    seconds = float(args.get("--seconds", 0)) or None
    if units is None and seconds is None:
        units = 20000
    go = threading.Event()
    out = []
    pool = []
    if threads > 1:
        per_thread = units // threads if units is not None else None
        pool = [threading.Thread(target=thread_main, name="worker-%d" % i,
                                 args=(go, depth, share, per_thread, seconds, out))
                for i in range(threads)]
        for thread in pool:
            thread.start()
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(),
                                 "python": platform.python_version()}) + "\n")
    sys.stdout.flush()
    if gate:
        sys.stdin.readline()
    start = time.perf_counter()
    start_cpu = time.process_time()
    start_preempted = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    if threads > 1:
        go.set()
        for thread in pool:
            thread.join()
    else:
        deadline = time.monotonic() + seconds if seconds else None
        worker(depth, share, units, deadline, out)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    preempted = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - start_preempted
    heavy_s = sum(r[1] for r in out)
    light_s = sum(r[2] for r in out)
    sys.stdout.write(json.dumps({
        "elapsed": elapsed, "cpu": cpu, "thread_seconds": sum(r[3] for r in out),
        "units": sum(r[0] for r in out), "heavy": heavy_s,
        "light": light_s, "heavy_share": heavy_s / (heavy_s + light_s) if heavy_s + light_s else 0.0,
        "threads": threads, "depth": depth, "preempted": preempted}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
