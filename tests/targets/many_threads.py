"""Many threads, nearly all asleep, a few busy: what a thread pool or a server looks like.

Usage: ``python many_threads.py [DURATION=30] [SLEEPERS=1000] [BUSY=2] [ORDER=sleepers-first]``.

SLEEPERS threads named ``sleeper-<n>`` block in ``Event.wait()`` at @many-wait and never wake;
BUSY threads named ``busy-<n>`` loop at @many-spin, sharing the GIL.  The main thread waits at
@many-main.  ORDER ``busy-first`` starts the busy threads before the sleepers (they spin once
all are started).  The ready line lists every thread (name -> ids).
"""

import sys
import threading
import time

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()
SLEEPERS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
BUSY = int(sys.argv[3]) if len(sys.argv) > 3 else 2
BUSY_FIRST = len(sys.argv) > 4 and sys.argv[4] == "busy-first"
never = threading.Event()
#: Set once every thread is started: busy threads started first spin only from then on, as each
#: sleeper's start waits for the GIL that spinning threads pass between them (5 ms a turn).
go = threading.Event()
records = {}


def sleeper(name, arrived):
    records[name] = thread_record()
    arrived.set()
    never.wait()  # @many-wait


def busy(name, deadline):
    records[name] = thread_record()
    go.wait()
    n = 0
    while time.time() < deadline: n += 1  # @many-spin
    return n


def start_busy(deadline):
    for n in range(BUSY):
        name = "busy-%d" % n
        threading.Thread(target=busy, args=(name, deadline), name=name, daemon=True).start()


def main():
    threading.stack_size(256 * 1024)  # a thousand threads in little memory
    deadline = time.time() + DURATION
    if BUSY_FIRST:
        start_busy(deadline)
    for n in range(SLEEPERS):
        arrived = threading.Event()
        name = "sleeper-%d" % n
        threading.Thread(target=sleeper, args=(name, arrived), name=name, daemon=True).start()
        arrived.wait()
    if not BUSY_FIRST:
        start_busy(deadline)
    go.set()
    while len(records) < SLEEPERS + BUSY:
        time.sleep(0.001)
    ready(main=thread_record(), threads=records)
    never.wait(max(0.0, deadline - time.time()))  # @many-main


if __name__ == "__main__":
    main()
