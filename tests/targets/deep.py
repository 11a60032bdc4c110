"""A single-threaded target with a deep, steady stack.  Plain Python, runs on 3.6+.

Usage: ``python deep.py [DURATION=30] [DEPTH=30] [MODE=sleep|spin]``.

Ground truth: the main thread's stack is, innermost first, ``leaf`` (@leaf-sleep when MODE is
sleep, @leaf-spin when spin), then ``level`` DEPTH-1 times (the innermost at @level-leaf, the
rest at @level), then ``<module>`` @deep-call.  DEPTH counts the ``level`` + ``leaf`` frames.
The ready line (see _truth.py) adds ``depth`` and ``mode``.  Deep values (e.g. 500) spread the
frames over several 3.11+ datastack chunks.
"""

import sys
import time

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()
DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 30
MODE = sys.argv[3] if len(sys.argv) > 3 else "sleep"
sys.setrecursionlimit(max(1000, DEPTH + 100))


def leaf(deadline):
    if MODE == "sleep":
        time.sleep(max(0.0, deadline - time.time()))  # @leaf-sleep
        return 0
    n = 0
    while time.time() < deadline: n += 1  # @leaf-spin
    return n


def level(n, deadline):
    if n <= 1:
        ready(main=thread_record(), depth=DEPTH, mode=MODE)
        return leaf(deadline)  # @level-leaf
    return level(n - 1, deadline)  # @level


level(DEPTH - 1, time.time() + DURATION)  # @deep-call
