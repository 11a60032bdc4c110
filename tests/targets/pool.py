"""A pool of workers, nearly all asleep, each woken now and then for a short job.  Runs on 3.6+.

Usage: ``python pool.py [DURATION=30] [WORKERS=150] [LOG]``.

WORKERS threads named ``worker-<n>`` wait for a job at @pool-wait.  The main thread hands one
job at a time to a worker picked at random, and pauses 5-25 ms after each: the worker spins at
@job-work for 5-15 ms and waits again.  A worker sleeps for seconds between its jobs, long enough to be taken
for dormant, so a recorder that stops reading dormant threads must notice each one that wakes.
LOG receives one line per job, ``<worker tid> <waited> <woke> <start> <end> <thread CPU>`` (ns,
monotonic clock): the worker is at @pool-wait for the whole of [waited, woke] and at @job-work
for the whole of [start, end], where it used that much CPU time.  The
ready line (see _truth.py) lists every thread.
"""

import random
import sys
import threading
import time

from _truth import duration_arg, native_id, ready, thread_record

DURATION = duration_arg()
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else 150
LOG = open(sys.argv[3], "w") if len(sys.argv) > 3 else None
clock = getattr(time, "monotonic_ns", lambda: int(time.monotonic() * 1e9))
thread_cpu = getattr(time, "thread_time_ns", lambda: int(time.thread_time() * 1e9))
records = {}


def job(seconds):
    cpu, start, now, length = thread_cpu(), 0, 0, seconds * 1e9
    while not start or now < start + length: now = clock(); start = start or now  # @job-work
    return start, now, thread_cpu() - cpu


def worker(name, wake, done):
    records[name] = thread_record()
    tid = native_id()
    done.set()
    while True:
        waited = clock(); wake.wait(); woke = clock()  # @pool-wait
        wake.clear()
        start, end, cpu = job(random.uniform(0.005, 0.015))
        if LOG:
            LOG.write("%d %d %d %d %d %d\n" % (tid, waited, woke, start, end, cpu))
            LOG.flush()
        done.set()


def main():
    threading.stack_size(256 * 1024)
    workers = []
    for n in range(WORKERS):
        wake, done = threading.Event(), threading.Event()
        name = "worker-%d" % n
        threading.Thread(target=worker, args=(name, wake, done), name=name, daemon=True).start()
        done.wait()
        workers.append((wake, done))
    ready(main=thread_record(), threads=records)
    deadline = time.time() + DURATION
    while time.time() < deadline:
        wake, done = random.choice(workers)
        done.clear()
        wake.set()
        done.wait()
        time.sleep(random.uniform(0.005, 0.025))  # @pool-main


if __name__ == "__main__":
    main()
