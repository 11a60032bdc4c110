"""A target that keeps making objects and closures.  Plain Python, runs on 3.6+.

Usage: ``python inits.py [DURATION=30]``.

The main thread loops in ``build``: ``Point(i)`` runs a Python ``__init__`` called by the class
(3.12 and 3.13 run it through an interpreter-made shim frame once the call is specialised),
``threading.Thread(...)`` does the same in the standard library, and ``make_adder(i)`` is a
function with a cell variable, whose first instruction (``MAKE_CELL``) has no line number.
"""

import threading
import time

from _truth import duration_arg

DURATION = duration_arg()


class Point:
    def __init__(self, x):
        self.x = x
        self.y = x * 2  # @point-init


def make_adder(x):
    return lambda y: x + y  # @make-adder


def build(deadline):
    rounds = 0
    while time.time() < deadline:
        for i in range(1000):
            Point(i)
            threading.Thread(target=None)
            make_adder(i)
        rounds += 1  # @build
    return rounds


if __name__ == "__main__":
    build(time.time() + DURATION)
