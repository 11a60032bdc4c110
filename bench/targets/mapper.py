"""Python work between anonymous mappings made and dropped (an mmap and a munmap each, as an
allocator that returns memory to the system does).

    python mapper.py ITERATIONS RESULT_FILE

Appends one JSON line to RESULT_FILE: its wall time, CPU time, time waiting for a CPU and
time blocked (the rest), from /proc/self/schedstat.
"""

import json
import mmap
import sys
import time


def schedstat():
    with open("/proc/self/schedstat") as f:
        run, wait, _ = map(int, f.read().split())
    return run / 1e9, wait / 1e9


def main():
    iterations, result = int(sys.argv[1]), sys.argv[2]
    start = time.perf_counter()
    run0, wait0 = schedstat()
    total = 0
    for _ in range(iterations):
        mapping = mmap.mmap(-1, 1 << 16)
        mapping[0] = 1  # a page fault
        for j in range(1000):
            total += j
        mapping.close()
    wall = time.perf_counter() - start
    run1, wait1 = schedstat()
    with open(result, "a") as f:
        f.write(json.dumps({"wall": wall, "cpu": run1 - run0, "wait": wait1 - wait0,
                            "blocked": wall - (run1 - run0) - (wait1 - wait0)}) + "\n")


if __name__ == "__main__":
    main()
