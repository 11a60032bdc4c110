"""Time spent in native code, called from Python and calling back into it.  Runs on 3.6+.

Usage: ``python natives.py [DURATION=30]``.

The main thread takes turns at ``crunch`` (zlib compression: the time goes in libz, under the
@crunch line) and ``sort_with_key`` (``sorted`` calls ``negate`` back from C, so a stack holds
Python, then the interpreter's sort, then Python again), each of a random size: a loop of
fixed length could keep in step with the sampling.  "sleeper" sleeps in ``slumber``
(@slumber) for the whole run: blocked in the kernel, in libc's sleep.  At the end the target
prints a JSON line: for each loop of the main thread, when it began and the nanoseconds it
spent in ``crunch`` and in ``sort_with_key`` by its own (monotonic) clock.  The ready line
(see _truth.py) carries both threads.
"""

import json
import os
import random
import sys
import threading
import time
import zlib

from _truth import duration_arg, ready, stop_on_signal, stopped, thread_record

clock = getattr(time, "monotonic_ns", lambda: int(time.monotonic() * 1e9))
DATA = os.urandom(1 << 15) + bytes(range(256)) * 256


def crunch(size):
    return zlib.compress(DATA[:size], 9)  # @crunch


def negate(x):
    return -x  # @negate


def sort_with_key(count):
    return sorted(range(count), key=negate)  # @sort


def slumber(arrived):
    arrived.record = thread_record()
    arrived.set()
    time.sleep(3600)  # @slumber


def main():
    duration = duration_arg()
    arrived = threading.Event()
    sleeper = threading.Thread(target=slumber, args=(arrived,), name="sleeper", daemon=True)
    sleeper.start()
    arrived.wait()
    stop_on_signal()
    ready(main=thread_record(), threads={"sleeper": arrived.record})
    loops = []
    deadline = time.time() + duration
    while time.time() < deadline and not stopped():
        start = clock()
        packed = crunch(random.randrange(len(DATA) // 2, len(DATA)))
        middle = clock()
        ordered = sort_with_key(random.randrange(1500, 4500))
        loops.append((start, middle - start, clock() - middle))
        # freed here, in main's frame, as a sample sees it, not in the timed calls
        del packed, ordered
    sys.stdout.write(json.dumps({"loops": loops}) + "\n")


if __name__ == "__main__":
    main()
