"""A tree visitor made of recursive generators, as black's LineGenerator and many AST walkers are.
Plain Python, runs on 3.8+.

Usage: ``python visitor.py [DURATION=30] [DEPTH=8] [WORK=20] [FAN=3] [LOADS=0]``

``visit(node)`` is a generator that delegates to ``visit(child)`` for each child (``yield
from``, never yielding a value) and calls ``work`` at the leaves, a loop of WORK steps (about
half a microsecond at the default).  So the stack changes every microsecond or so, generator
frames of one code are made and freed at every level, and every leaf is reached through exactly
DEPTH + 1 ``visit`` frames: a stack with ``work`` under any other number of them is wrong.  The
ready line (see _truth.py) gives the depth; at the end the target prints one more JSON line:
``{"work_share": share of the wall time spent inside work's timed loop}``.  SIGUSR1 ends the
run before DURATION (see _truth.py).

LOADS > 0 also runs a fresh module's body LOADS times a second between visits, as a linter
loads its checkers as it goes: each compiled, run for LOAD_SECONDS and freed, so that the next
is often made where it was; module n is ``checker_<n>.py``, its body n % LOAD_SHAPES statements
longer than the first, as no two real modules are alike.  The last JSON line then has
``"loads": [start, end, n, ...]``, each body's start and end by ``time.perf_counter()``
(CLOCK_MONOTONIC on Linux, the clock of a recording's timestamps).
"""

import json
import sys
import time

from _truth import duration_arg, ready, stop_on_signal, stopped

DURATION = duration_arg()
DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 8
WORK = int(sys.argv[3]) if len(sys.argv) > 3 else 20
FAN = int(sys.argv[4]) if len(sys.argv) > 4 else 3  # children per node (1: one deep chain)
LOADS = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
LOAD_SECONDS = 0.002
LOAD_SHAPES = 40
LOAD_BODY = """import time
_start = time.perf_counter()
while time.perf_counter() < _start + %r: pass
_end = time.perf_counter()
""" % LOAD_SECONDS
clock = time.perf_counter
work_time = 0.0


class Node:
    __slots__ = ("children",)

    def __init__(self, children=()):
        self.children = children


def tree(depth, fan=3):
    return Node(tuple(tree(depth - 1, fan) for _ in range(fan))) if depth else Node()


def work(steps):
    global work_time
    start = clock()
    total = 0
    for i in range(steps):
        total += i  # @work
    work_time += clock() - start


def visit(node, steps):
    if not node.children:
        work(steps)  # @leaf
        return
    for child in node.children:  # @children
        yield from visit(child, steps)  # @delegate


def load(n, spans):
    """Run module n's body once (see LOADS), and note when it ran."""
    source = LOAD_BODY + "".join("_%d = %d\n" % (i, i) for i in range(n % LOAD_SHAPES))
    namespace = {}
    exec(compile(source, "checker_%d.py" % n, "exec"), namespace)
    spans.extend((namespace["_start"], namespace["_end"], n))


def main():
    root = tree(DEPTH, FAN)
    stop_on_signal()
    ready(depth=DEPTH, visits=DEPTH + 1)
    start = clock()
    end = start + DURATION
    spans = []
    next_load = start
    while clock() < end and not stopped():
        for _ in visit(root, WORK):
            pass
        if LOADS and clock() >= next_load:
            load(len(spans) // 3, spans)
            next_load += 1 / LOADS
    report = {"work_share": work_time / (clock() - start)}
    if LOADS:
        report["loads"] = spans
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
