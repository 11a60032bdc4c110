"""Threads that compute for about a millisecond each and end, three at a time.

Usage: ``python brief_threads.py DURATION LOG [held|loose]``.

The main thread starts three threads, each working about 1 ms at @brief, and waits for them;
then the next three, until DURATION.  ``held`` (the default) keeps each Thread object until it
is joined, as a test suite's threads are kept; ``loose`` keeps none (started and forgotten, the
main thread waiting on a counter): a Thread is freed as its thread ends.  Each thread appends
``<native id> <name>`` to LOG as it starts, the names a recorder must find.  A thread sampled
once is as often as not sampled in its last moments, when it may end before a recorder that
looks its name up after the round's walks gets there.
"""

import sys
import threading
import time

from _truth import duration_arg, native_id, ready, thread_record

DURATION = duration_arg()
LOG = open(sys.argv[2], "a", buffering=1)
HELD = (sys.argv[3] if len(sys.argv) > 3 else "held") == "held"
AT_ONCE = 3
LOCK = threading.Lock()
done = threading.Semaphore(0)


def brief():
    with LOCK:
        LOG.write("%d %s\n" % (native_id(), threading.current_thread().name))
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end: pass  # @brief
    if not HELD:
        done.release()


ready(main=thread_record())
deadline = time.time() + DURATION
batch = 0
while time.time() < deadline:
    batch += 1
    names = ["brief-%d-%d" % (batch, n) for n in range(AT_ONCE)]
    if HELD:
        threads = [threading.Thread(target=brief, name=name) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        del threads, thread
    else:
        for name in names:
            threading.Thread(target=brief, name=name, daemon=True).start()
        for _ in names:
            done.acquire()
    time.sleep(0.002)
LOG.close()
