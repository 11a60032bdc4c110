"""A program that times its own first moments: its first line, then imports, then work.

Usage: ``python first_moments.py [WORK_SECONDS=0.3]``.

Plain Python, runs on 3.8+.  At the end it prints one JSON line: ``{"first_line_ns": ...,
"imported_ns": ...}``, the ``time.monotonic_ns()`` (the clock a recording's samples are
stamped with) of its first line and of the end of its imports (some 50-150 ms), for a
launched recording to be checked against: it must hold the program's first moments too.
"""

import time

FIRST_LINE_NS = time.monotonic_ns()

import importlib  # noqa: E402  (the modules below are imported after the first line's time)
import json  # noqa: E402
import sys  # noqa: E402

for name in ("argparse", "decimal", "email.message", "http.client", "logging",
             "xml.dom.minidom", "unittest", "asyncio"):
    importlib.import_module(name)
IMPORTED_NS = time.monotonic_ns()


def work(seconds):
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        total += 1
    return total


work(float(sys.argv[1]) if len(sys.argv) > 1 else 0.3)
print(json.dumps({"first_line_ns": FIRST_LINE_NS, "imported_ns": IMPORTED_NS}))
