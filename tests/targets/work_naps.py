"""A thread that works and naps in turn, timing each part itself.  Plain Python, runs on 3.6+.

Usage: ``python work_naps.py [DURATION=30]``.

The main thread runs ``crunch`` (@crunch: some 0.4 ms of arithmetic), then naps 0.3 ms in
``nap`` (@nap), over and over: most rounds of a sampler find it in one or the other, and a
round that comes during a nap finds it back at work a moment later, when /proc is read.  On
SIGUSR1 (or at the end) it prints ``{"crunch": ..., "nap": ...}``: each part's share of the
loop's wall time by ``time.perf_counter``.  The ready line (see _truth.py) has ``main``.
"""

import json
import time

from _truth import duration_arg, ready, stop_on_signal, stopped, thread_record

CRUNCH_SECONDS = 0.0004
NAP_SECONDS = 0.0003


def crunch():
    end = time.perf_counter() + CRUNCH_SECONDS
    total = 0
    while time.perf_counter() < end:  # @crunch
        total += 1
    return total


def nap():
    time.sleep(NAP_SECONDS)  # @nap


def main():
    deadline = time.time() + duration_arg()
    stop_on_signal()
    ready(main=thread_record())
    spent = {"crunch": 0.0, "nap": 0.0}
    clock = time.perf_counter
    start = clock()
    while time.time() < deadline and not stopped():
        before = clock()
        crunch()
        between = clock()
        nap()
        after = clock()
        spent["crunch"] += between - before
        spent["nap"] += after - between
    total = clock() - start
    print(json.dumps({part: seconds / total for part, seconds in spent.items()}), flush=True)


if __name__ == "__main__":
    main()
