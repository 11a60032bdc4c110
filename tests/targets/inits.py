"""A target that keeps making objects and closures.  Plain Python, runs on 3.6+.

Usage: ``python inits.py [DURATION=30]``.

The main thread loops in ``build``: ``Point(i)`` runs a Python ``__init__`` called by the class
(3.12 and 3.13 run it through an interpreter-made shim frame once the call is specialised),
``threading.Thread(...)`` does the same in the standard library, ``make_adder(i)`` is a
function with eight cell variables, whose first instructions (3.11+: ``MAKE_CELL``, before
``RESUME``) have no line number, and ``spin`` was compiled from a tree in which one statement
has line 0, as code generators may leave it: its instructions have no line.
"""

import ast
import threading
import time

from _truth import duration_arg

DURATION = duration_arg()


class Point:
    def __init__(self, x):
        self.x = x
        self.y = x * 2  # @point-init


def make_adder(x, a=1, b=2, c=3, d=4, e=5, f=6, g=7):  # @make-adder-def
    return lambda y: x + y + a + b + c + d + e + f + g  # @make-adder


def _generated_spin():
    tree = ast.parse("def spin(n):\n    t = 0\n    for i in range(n):\n        t += i\n"
                     "        t -= i // 2\n    return t\n")
    unlined = tree.body[0].body[1].body[1]
    for node in ast.walk(unlined):
        node.lineno = node.end_lineno = 0
    namespace = {}
    exec(compile(tree, "<generated>", "exec"), namespace)
    return namespace["spin"]


spin = _generated_spin()


def build(deadline):
    rounds = 0
    while time.time() < deadline:
        for i in range(1000):
            for k in range(4):  # (a threading.Thread takes as long as a few dozen of them)
                Point(k)
            threading.Thread(target=None)
            make_adder(i)
            spin(20)
        rounds += 1  # @build
    return rounds


if __name__ == "__main__":
    build(time.time() + DURATION)
