"""A target whose main thread spends a known part of its time in the garbage collector.
Plain Python, runs on 3.8+.

Usage: ``python collecting.py [DURATION=30]``.

Automatic collection is off, so the collector runs only where the target calls it: the main
thread alternates ``compute`` (plain arithmetic, a few milliseconds) with ``collect_now``
(``gc.collect()`` over a live heap of tens of thousands of containers, milliseconds too),
while a second thread, ``napper``, wakes every few hundred microseconds to do a little
arithmetic that allocates nothing the collector tracks, so a collection is never its own.  A
long switch interval keeps the napper from making the main thread give up the GIL between a
collection and its end stamp.  The ready
line names the threads; at the end the target prints one more JSON line: ``{"collections":
[[start, end], ...]}``, each ``gc.collect()`` call timed around it on ``time.monotonic_ns()``
(the clock a recorder's samples are stamped with; nothing written in Python runs inside a
collection, so the collector keeps the GIL throughout), and ``"elapsed": [start, end]`` of the
loop.  SIGUSR1 ends the run before DURATION (see _truth.py).
"""

import gc
import json
import random
import sys
import threading
import time

from _truth import duration_arg, ready, stop_on_signal, stopped, thread_record
from _work import work

DURATION = duration_arg()
collections = []


def compute(until_ns):
    while time.monotonic_ns() < until_ns:
        work(50)


def collect_now():
    start = time.monotonic_ns()
    gc.collect()
    collections.append([start, time.monotonic_ns()])


def nap(stop):
    while not stop.is_set():
        time.sleep(0.0003)
        work(20)


def main():
    gc.disable()
    sys.setswitchinterval(0.05)
    live = [[i] for i in range(40_000)]  # what every full collection traverses
    stop = threading.Event()
    napper = threading.Thread(target=nap, args=(stop,), name="napper")
    napper.start()
    stop_on_signal()
    ready(threads={"napper": {"native_id": napper.native_id}}, main=thread_record())
    start = time.monotonic_ns()
    end = start + int(DURATION * 1e9)
    now = start
    while now < end and not stopped():
        compute(now + random.randrange(2_000_000, 8_000_000))
        collect_now()
        now = time.monotonic_ns()
    stop.set()
    napper.join()
    print(json.dumps({"collections": collections, "elapsed": [start, now], "live": len(live)}))


main()
