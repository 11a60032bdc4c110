"""Threads made one after another, each waiting in the same function.

Usage: ``python successive_threads.py [DURATION=30]``.

The first thread waits from the start; at each SIGUSR2 the waiting thread ends and, once it is
gone, the next one starts and waits where it did.  glibc hands the new thread the last one's
struct pthread, and CPython <=3.10 its freed thread state and frame objects, so the new thread
can look like the old one field for field.  Prints the ready line with the first thread's
record under ``thread``, then one line ``{"thread": ...}`` for each thread after it.
"""

import json
import os
import signal
import sys
import threading
import time

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()
asked = []


def wait_here(started, release, record):
    record.update(thread_record())
    started.set()
    release.wait()


def start():
    started, release, record = threading.Event(), threading.Event(), {}
    thread = threading.Thread(target=wait_here, args=(started, release, record))
    thread.start()
    started.wait()
    time.sleep(0.05)  # into the wait
    return thread, release, record


def gone(tid):
    """Wait (a second at most) until the kernel has ended thread ``tid``: ``join`` returns as
    the thread leaves Python, before glibc has taken back its stack and struct pthread."""
    deadline = time.time() + 1
    while os.path.exists("/proc/self/task/%d" % tid) and time.time() < deadline:
        time.sleep(0.001)


signal.signal(signal.SIGUSR2, lambda signum, frame: asked.append(signum))
thread, release, record = start()
ready(thread=record)
end = time.time() + DURATION
while time.time() < end:
    if asked:
        asked.pop()
        release.set()
        thread.join()
        gone(record["native_id"])
        thread, release, record = start()
        sys.stdout.write(json.dumps({"thread": record}) + "\n")
        sys.stdout.flush()
    time.sleep(0.01)
release.set()
