"""One thread spins; the others wait for an event that never comes.  Runs on 3.6+.

Usage: ``python one_busy.py [DURATION=30] [WAITERS=6]``.

"spinner" runs at @one-spin and holds the GIL for good (no other thread ever asks for it);
WAITERS threads named ``waiter-<n>`` and the main thread block in ``Event.wait()`` without a
timeout, so they never wake.  The scheduler then sees exactly one runnable thread.
"""

import sys
import threading
import time

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()
WAITERS = int(sys.argv[2]) if len(sys.argv) > 2 else 6
never = threading.Event()
records = {}


def spin(deadline):
    records["spinner"] = thread_record()
    n = 0
    while time.time() < deadline: n += 1  # @one-spin
    return n


def wait(name, arrived):
    records[name] = thread_record()
    arrived.set()
    never.wait()  # @one-wait


def main():
    for n in range(WAITERS):
        arrived = threading.Event()
        name = "waiter-%d" % n
        threading.Thread(target=wait, args=(name, arrived), name=name, daemon=True).start()
        arrived.wait()
    spinner = threading.Thread(target=spin, args=(time.time() + DURATION,), name="spinner",
                               daemon=True)
    spinner.start()
    while "spinner" not in records:
        time.sleep(0.001)
    ready(main=thread_record(), threads=records)
    spinner.join()


if __name__ == "__main__":
    main()
