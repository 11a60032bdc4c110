"""A target that keeps replacing a function's code object at the same address.  Runs on 3.6+.

Usage: ``python codechurn.py [DURATION=30] [LOG]``.

Each round compiles a fresh function ``work_<n>`` of identical shape, runs it CPU-bound for
SLICE seconds from the same call site (@churn-call), then drops it.  Its code object is freed
and the next round's, being the same size, usually lands at the very same address: a recorder
that keys code objects by address alone reports the old name.  The ready line (see _truth.py)
carries ``main``; LOG receives one line per round, ``<monotonic ns at start> <n> <code address>``,
so a test can tell which function was running at any moment and whether addresses were reused.
"""

import sys
import time

from _truth import duration_arg, ready, thread_record

SLICE = 0.1
SOURCE = """
def work_%d(deadline, clock):
    while clock() < deadline: pass  # @churn-work
"""


def monotonic_ns():
    return int(time.monotonic() * 1e9)


def main():
    duration = duration_arg()
    log = open(sys.argv[2], "w") if len(sys.argv) > 2 else None
    ready(main=thread_record(), slice=SLICE)
    end = time.monotonic() + duration
    n = 0
    while time.monotonic() < end:
        namespace = {}
        exec(SOURCE % n, namespace)
        work = namespace.pop("work_%d" % n)
        namespace.clear()       # no function <-> globals cycle: freed at once, not by the GC
        start = monotonic_ns()
        if log:
            log.write("%d %d %d\n" % (start, n, id(work.__code__)))
            log.flush()
        work(time.monotonic() + SLICE, time.monotonic)  # @churn-call
        del work, namespace
        n += 1


if __name__ == "__main__":
    main()
