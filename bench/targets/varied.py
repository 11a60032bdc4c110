"""Soak target: CPU-bound work whose stack keeps changing, so a recorder keeps meeting new stacks.

    python varied.py [--seconds S] [--threads 1] [--functions 16] [--depth 12] [--seed 1]

Each step calls a pseudo-random path of ``--depth`` calls through ``--functions`` distinct
functions (generated once at start, each with its own code object), then spins a little at the
bottom: with 16 functions and depth 12 almost every sample shows a stack never seen before.
This is the worst case for a recorder's interning tables and stack caches; bench/targets/gated.py
(one stack) is the best case.  Prints one JSON line when ready and one when done.
"""

import json
import os
import platform
import random
import sys
import threading
import time

TEMPLATE = """
def f{i}(path, k):
    if k < len(path):
        return FUNCS[path[k]](path, k + 1)
    x = 0
    for j in range(300):
        x += j * j
    return x
"""


def build(count):
    namespace = {}
    for i in range(count):
        exec(compile(TEMPLATE.format(i=i), "<varied f%d>" % i, "exec"), namespace)
    funcs = [namespace["f%d" % i] for i in range(count)]
    namespace["FUNCS"] = funcs
    return funcs


def run(funcs, depth, deadline, seed, out):
    rng = random.Random(seed)
    n = len(funcs)
    steps = 0
    while time.monotonic() < deadline:
        path = [rng.randrange(n) for _ in range(rng.randrange(2, depth + 1))]
        funcs[path[0]](path, 1)
        steps += 1
    out.append(steps)


def main(argv):
    args = dict(zip(argv[::2], argv[1::2]))
    seconds = float(args.get("--seconds", 60))
    threads = int(args.get("--threads", 1))
    count = int(args.get("--functions", 16))
    depth = int(args.get("--depth", 12))
    seed = int(args.get("--seed", 1))
    funcs = build(count)
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(),
                                 "python": platform.python_version()}) + "\n")
    sys.stdout.flush()
    deadline = time.monotonic() + seconds
    out = []
    pool = [threading.Thread(target=run, args=(funcs, depth, deadline, seed + i, out))
            for i in range(threads - 1)]
    for thread in pool:
        thread.start()
    run(funcs, depth, deadline, seed, out)
    for thread in pool:
        thread.join()
    sys.stdout.write(json.dumps({"steps": sum(out)}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
