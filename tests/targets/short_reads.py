"""Python work and a short read of a cached file in a loop: a call that releases the GIL for a
few microseconds, as a program's I/O does, at one address in the frame chunk with the calls
around it (3.11+).  Plain Python, runs on 3.8+.

Usage: ``python short_reads.py [DURATION=30]``

``reading`` takes one argument: with two it happened to take as many bytes in the chunk as
``py_work``, which hid a walk's mistake on 3.12.  At the end the target prints one more JSON
line: ``{"read_share": share of the wall time from the clock call before each ``reading`` to
the one after it}``.  SIGUSR1 ends the run before DURATION (see _truth.py).
"""

import json
import os
import random
import sys
import tempfile
import time

from _truth import duration_arg, ready, stop_on_signal, stopped

DURATION = duration_arg()
SIZE = 65536
clock = time.perf_counter


def py_work(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def reading(fd):
    return os.pread(fd, SIZE, 0)  # @read


def main():
    with tempfile.TemporaryFile() as f:
        f.write(os.urandom(SIZE))
        f.flush()
        fd = f.fileno()
        stop_on_signal()
        ready()
        spent = 0.0
        start = clock()
        end = start + DURATION
        while clock() < end and not stopped():
            for _ in range(100):  # (no other call between a read and the next py_work)
                py_work(random.randint(150, 450))
                before = clock()  # @timed
                reading(fd)  # @call
                spent += clock() - before  # @after
        total = clock() - start
    sys.stdout.write(json.dumps({"read_share": spent / total}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
