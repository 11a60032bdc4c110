"""Python work between anonymous mappings made and dropped (an mmap and a munmap each, as an
allocator that returns memory to the system does).

    python timed_run.py RESULT_FILE mapper.py ITERATIONS

(run under timed_run.py, which says where its time went).
"""

import mmap
import sys


def main():
    iterations = int(sys.argv[1])
    total = 0
    for _ in range(iterations):
        mapping = mmap.mmap(-1, 1 << 16)
        mapping[0] = 1  # a page fault
        for j in range(1000):
            total += j
        mapping.close()


if __name__ == "__main__":
    main()
