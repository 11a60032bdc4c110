"""Threads that are sampled only before ``threading`` registers them.  Plain Python, runs on 3.8+.

Usage: ``python late_threads.py DURATION LOG``.

Every 20 ms the main thread starts a thread named ``late-N`` that waits 15 ms in its
``_bootstrap_inner`` before Lib/threading.py's own runs (which puts it in ``threading._active``),
then ends at once: all its life but a few microseconds it is where a short-lived thread is in its
first moments, known only to its own first frame, ``Thread._bootstrap(self)``.  Each thread
appends ``<native id> <name>`` to LOG (line-buffered) as it starts, the names a recorder must
find.  The ready line (see _truth.py) has ``main``; the target exits after DURATION.
"""

import sys
import threading
import time

from _truth import duration_arg, native_id, ready, thread_record

DURATION = duration_arg()
LOG = open(sys.argv[2], "a", buffering=1)
HOLD = 0.015
EVERY = 0.02


class LateThread(threading.Thread):
    def _bootstrap_inner(self):
        LOG.write("%d %s\n" % (native_id(), self.name))
        time.sleep(HOLD)  # @hold
        super()._bootstrap_inner()


def main():
    ready(main=thread_record())
    end = time.time() + DURATION
    started = []
    n = 0
    while time.time() < end:
        thread = LateThread(target=lambda: None, name="late-%d" % n, daemon=True)
        thread.start()
        started.append(thread)
        n += 1
        time.sleep(EVERY)
    for thread in started:
        thread.join()


if __name__ == "__main__":
    main()
