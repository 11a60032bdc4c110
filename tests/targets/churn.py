"""A target whose threads keep starting and ending.  Plain Python, runs on 3.6+.

Usage: ``python churn.py [DURATION=30] [WORKERS=4]``.

WORKERS threads at a time run ``short_lived`` (named ``worker-<n>``), each for a few ms of
busy work at @churn-spin, then exit and are replaced; thread states and their datastacks are
freed and reused all the time, so a sampler sees torn reads.  The main thread stays in
``supervise`` @supervise.  The ready line (see _truth.py) has ``main`` and ``workers``.
"""

import sys
import threading
import time

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else 4


def short_lived(stop_at):
    n = 0
    while time.time() < stop_at: n += 1  # @churn-spin
    return n


def supervise(deadline):
    counter = 0
    live = []
    while time.time() < deadline:
        live = [t for t in live if t.is_alive()]
        while len(live) < WORKERS:
            counter += 1
            t = threading.Thread(target=short_lived, args=(time.time() + 0.003,),
                                 name="worker-%d" % counter, daemon=True)
            t.start()
            live.append(t)
        time.sleep(0.001)  # @supervise


ready(main=thread_record(), workers=WORKERS)
supervise(time.time() + DURATION)
