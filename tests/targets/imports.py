"""A target that imports short-lived modules over and over, as ``pydoc -k`` or a test runner
collecting its tests does.  Plain Python, runs on 3.6+.

Usage: ``python imports.py [DURATION=30]``.

Writes MODULES modules to a directory of its own, whose bodies compute for BODY_SECONDS at their line 3, and
imports them one after another (@import), each dropped from ``sys.modules`` at once so that
the next import runs its body again: a module's code object is freed as soon as its body has
run, and the next one is often made where it was.  The bodies time themselves; on SIGUSR1 the
target stops and prints ``{"bodies_s": ..., "elapsed_s": ..., "spans": [start, end, n, ...]}``,
each body's start and end by ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux, the clock of
a recording's timestamps) and the number n of its module, ``short_module_<n>``.  The ready
line (see _truth.py) has ``main``.
"""

import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from array import array

from _truth import duration_arg, ready, stop_on_signal, stopped, thread_record

MODULES = 20
BODY_SECONDS = 0.0005
BODY = """import sys, time
_start = time.perf_counter()
while time.perf_counter() < _start + %r: pass
_end = time.perf_counter(); sys.modules["__main__"].record(_start, _end, __name__)
""" % BODY_SECONDS
BODIES = [0.0]  # seconds the bodies timed themselves
SPANS = array("d")  # start, end, module number of each body (no object for the collector)


def record(start, end, name):
    """A body's time, from the body."""
    BODIES[0] += end - start
    SPANS.extend((start, end, float(name[len("short_module_"):])))


def main():
    duration = duration_arg()
    directory = tempfile.mkdtemp(prefix="short-modules-")
    for n in range(MODULES):
        with open(os.path.join(directory, "short_module_%d.py" % n), "w") as f:
            f.write(BODY)
    sys.path.insert(0, directory)
    importlib.invalidate_caches()
    stop_on_signal()
    ready(main=thread_record())
    start = time.perf_counter()
    end = start + duration
    n = 0
    while time.perf_counter() < end and not stopped():
        name = "short_module_%d" % (n % MODULES)
        importlib.import_module(name)  # @import
        del sys.modules[name]
        n += 1
    shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps({"bodies_s": BODIES[0], "elapsed_s": time.perf_counter() - start,
                      "spans": SPANS.tolist()}), flush=True)


if __name__ == "__main__":
    main()
