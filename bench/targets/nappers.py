"""Threads that sleep and wake all the time, and one busy thread: a worst case for reading kernel
stacks (every round finds each napper asleep again after it ran).

Usage: ``python nappers.py THREADS SECONDS``; prints a ready line, then works until the end.
"""

import json
import os
import sys
import threading
import time


def nap(stop):
    while not stop.is_set():
        time.sleep(0.0005)


def busy(seconds):
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        for i in range(500):
            x += i * i


def main():
    threads, seconds = int(sys.argv[1]), float(sys.argv[2])
    stop = threading.Event()
    for _ in range(threads):
        threading.Thread(target=nap, args=(stop,), daemon=True).start()
    print(json.dumps({"pid": os.getpid()}), flush=True)
    busy(seconds)
    stop.set()


main()
