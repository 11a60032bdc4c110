"""A pool whose workers wait seconds between jobs.  Plain Python, runs on 3.6+.

Usage: ``python pool_jobs.py [DURATION=30] [WORKERS=100] [EVERY=0.25]``.

WORKERS threads named ``worker-<n>`` each wait for a job of their own (@pool-wait); every EVERY
seconds the main thread hands the next worker, in turn, a job: about 0.1 s of zlib compression
(@pool-job, the time in libz), so that each worker waits WORKERS * EVERY seconds between
jobs, the rest of the pool asleep all along.  The ready line (see _truth.py) has ``main`` and
``workers`` (how many).
"""

import os
import sys
import threading
import time
import zlib

from _truth import duration_arg, ready, stop_on_signal, stopped, thread_record

DURATION = duration_arg()
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else 100
EVERY = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
JOB_SECONDS = 0.1
DATA = os.urandom(1 << 14) + bytes(range(256)) * 64


def job():
    end = time.monotonic() + JOB_SECONDS
    while time.monotonic() < end:
        zlib.compress(DATA, 6)  # @pool-job


def work(wake):
    while True:
        wake.wait()  # @pool-wait
        wake.clear()
        job()


def main():
    wakes = [threading.Event() for _ in range(WORKERS)]
    for n, wake in enumerate(wakes):
        threading.Thread(target=work, args=(wake,), name="worker-%d" % n, daemon=True).start()
    stop_on_signal()
    ready(main=thread_record(), workers=WORKERS)
    deadline = time.monotonic() + DURATION
    turn = 0
    while time.monotonic() < deadline and not stopped():
        wakes[turn % WORKERS].set()
        turn += 1
        time.sleep(EVERY)


main()
