"""black reformatting one file (``--diff``), timing its own phases.

    python black_timed.py FILE

Needs black installed in pure Python (``pip install --no-binary black black``: the wheels are
compiled with mypyc and have no Python frames).  At exit it prints to stderr, as JSON, the
share of ``_format_str_once``'s wall time spent in ``lib2to3_parse`` (the parser) and in
``LineGenerator.visit`` (a chain of nested generators, resumed by a ``for`` loop), measured
by the program itself with ``time.perf_counter`` around those calls, to compare with what
profilers attribute to them.
"""

import atexit
import json
import sys
import time

import black

spent = {"parse": 0.0, "visit": 0.0, "once": 0.0}


def timed(function, key):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start
    return wrapper


class TimedIterator:
    """The top ``visit`` generator, its ``next`` calls timed (the nested ones are inside)."""

    def __init__(self, iterator):
        self.iterator = iterator

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            return next(self.iterator)
        finally:
            spent["visit"] += time.perf_counter() - start


class TimedLineGenerator(black.LineGenerator):
    outermost = True

    def __init__(self, *args, **kwargs):
        TimedLineGenerator.outermost = True
        super().__init__(*args, **kwargs)

    def visit(self, node):
        if TimedLineGenerator.outermost:
            TimedLineGenerator.outermost = False
            return TimedIterator(super().visit(node))
        return super().visit(node)


def report():
    once = spent["once"] or 1.0
    print(json.dumps({"parse": spent["parse"] / once, "visit": spent["visit"] / once,
                      "seconds": spent["once"]}), file=sys.stderr)


black.lib2to3_parse = timed(black.lib2to3_parse, "parse")
black._format_str_once = timed(black._format_str_once, "once")
black.LineGenerator = TimedLineGenerator
atexit.register(report)
sys.argv = ["black", "--diff", "-q", sys.argv[1]]
black.patched_main()
