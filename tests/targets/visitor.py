"""A tree visitor made of recursive generators, as black's LineGenerator and many AST walkers are.
Plain Python, runs on 3.8+.

Usage: ``python visitor.py [DURATION=30] [DEPTH=8] [WORK=20] [FAN=3]``

``visit(node)`` is a generator that delegates to ``visit(child)`` for each child (``yield
from``, never yielding a value) and calls ``work`` at the leaves, a loop of WORK steps (about
half a microsecond at the default).  So the stack changes every microsecond or so, generator
frames of one code are made and freed at every level, and every leaf is reached through exactly
DEPTH + 1 ``visit`` frames: a stack with ``work`` under any other number of them is wrong.  The
ready line (see _truth.py) gives the depth; at the end the target prints one more JSON line:
``{"work_share": share of the wall time spent inside work's timed loop}``.  SIGUSR1 ends the
run before DURATION (see _truth.py).
"""

import json
import sys
import time

from _truth import duration_arg, ready, stop_on_signal, stopped

DURATION = duration_arg()
DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 8
WORK = int(sys.argv[3]) if len(sys.argv) > 3 else 20
FAN = int(sys.argv[4]) if len(sys.argv) > 4 else 3  # children per node (1: one deep chain)
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


def main():
    root = tree(DEPTH, FAN)
    stop_on_signal()
    ready(depth=DEPTH, visits=DEPTH + 1)
    start = clock()
    end = start + DURATION
    while clock() < end and not stopped():
        for _ in visit(root, WORK):
            pass
    sys.stdout.write(json.dumps({"work_share": work_time / (clock() - start)}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
