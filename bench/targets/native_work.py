"""One thread's work in native code, timed by itself: for the native-frames benchmark.

Usage: ``python native_work.py SECONDS``.  Prints ``{"pid": N}`` at once, then loops for
SECONDS over zlib compression (the time in libz) and ``sorted`` with a Python key (C calling
Python back), counting loops per 100 ms slot; at the end prints ``{"slots": [...]}``: how much
work each slot got done, so a profiler's cost shows as fewer loops in the slots it ran in.
"""

import json
import os
import sys
import time
import zlib

DATA = os.urandom(1 << 14) + bytes(range(256)) * 64
SLOT_S = 0.1


def negate(x):
    return -x


def main():
    seconds = float(sys.argv[1])
    print(json.dumps({"pid": os.getpid()}), flush=True)
    start = time.monotonic()
    slots = [0] * int(seconds / SLOT_S)
    while True:
        slot = int((time.monotonic() - start) / SLOT_S)
        if slot >= len(slots):
            break
        zlib.compress(DATA, 6)
        sorted(range(300), key=negate)
        slots[slot] += 1
    print(json.dumps({"slots": slots}), flush=True)


if __name__ == "__main__":
    main()
