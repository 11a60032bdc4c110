"""Benchmark target: CPU-bound work at the bottom of a deep Python stack, in N threads.

    python deep.py [--depth 30] [--threads 1] [--seconds S | --work UNITS]

With --work it does a fixed amount of work and prints its own wall time (the slowdown measure);
with --seconds it runs for that long.  Its last line is JSON: {"elapsed": s, "units": n}.
"""

import json
import sys
import threading
import time


def spin(units):
    x = 0
    for _ in range(units):
        for i in range(1000):
            x += i * i
    return x


def descend(depth, units):
    if depth <= 1:
        return spin(units)
    return descend(depth - 1, units)


def worker(depth, units, deadline, done):
    count = 0
    while (units is None or count < units) and (deadline is None or time.monotonic() < deadline):
        descend(depth, 1)
        count += 1
    done.append(count)


def main(argv):
    args = dict(zip(argv[::2], argv[1::2]))
    depth = int(args.get("--depth", 30)) - 2        # <module> and worker are two frames
    threads = int(args.get("--threads", 1))
    units = int(args["--work"]) if "--work" in args else None
    seconds = float(args.get("--seconds", 0)) or None
    start = time.perf_counter()
    deadline = time.monotonic() + seconds if seconds else None
    done = []
    if threads == 1:
        worker(depth, units, deadline, done)
    else:
        pool = [threading.Thread(target=worker, args=(depth, units and units // threads, deadline, done))
                for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    print(json.dumps({"elapsed": time.perf_counter() - start, "units": sum(done)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
