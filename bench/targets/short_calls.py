"""A loop of Python work and short reads of a cached file: a call that releases the GIL for a
few microseconds, as a program's I/O does.  Times itself: at the end it prints
``{"read_share": x}``, the share of its wall time spent in ``reading`` (measured around each
call, so a little more than the call itself).

Usage: ``python short_calls.py SECONDS [READ_BYTES [WORK]]`` (defaults 64 KiB and 300 loop
steps, randomised by half either way so that no sampling rate keeps step with the loop).
"""

import json
import os
import random
import sys
import tempfile
import time


def py_work(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def reading(fd, size):
    return os.pread(fd, size, 0)


def main():
    seconds = float(sys.argv[1])
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 65536
    work = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    with tempfile.TemporaryFile() as f:
        f.write(os.urandom(size))
        f.flush()
        fd = f.fileno()
        spent = 0.0
        start = time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            py_work(random.randint(work // 2, 3 * work // 2))
            before = time.perf_counter()
            reading(fd, size)
            spent += time.perf_counter() - before
        total = time.perf_counter() - start
    print(json.dumps({"read_share": spent / total}), flush=True)


if __name__ == "__main__":
    main()
