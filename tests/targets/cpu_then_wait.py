"""Short bursts of CPU work, each followed by a short sleep: a request handler's pattern.
Runs on 3.6+.

Usage: ``python cpu_then_wait.py [DURATION=30] [BURST_MS=1.5] [PAUSE_MS=2]``.

The main thread calls ``compute`` (BURST_MS of CPU at @burst) and then ``pause`` (PAUSE_MS in
``time.sleep`` at @pause), over and over, timing its own CPU time in each with
``time.thread_time``.  The kernel adds a running thread's CPU time to ``schedstat`` at timer
ticks and when it stops running, so most of ``compute``'s CPU time shows there while the
thread is already in ``pause``.  After the ready line, the last line on stdout is JSON with
the CPU seconds spent in each (``compute``, ``pause``) and the wall seconds
(``compute_wall``, ``pause_wall``).
"""

import json
import sys
import time

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()
BURST = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0015
PAUSE = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.002
spent = {"compute": 0.0, "pause": 0.0, "compute_wall": 0.0, "pause_wall": 0.0}


def compute():
    start, wall = time.thread_time(), time.perf_counter()
    end = wall + BURST
    n = 0
    while time.perf_counter() < end: n += 1  # @burst
    spent["compute"] += time.thread_time() - start
    spent["compute_wall"] += time.perf_counter() - wall
    return n


def pause():
    start, wall = time.thread_time(), time.perf_counter()
    time.sleep(PAUSE)  # @pause
    spent["pause"] += time.thread_time() - start
    spent["pause_wall"] += time.perf_counter() - wall


def main():
    ready(main=thread_record())
    deadline = time.time() + DURATION
    while time.time() < deadline:
        compute()
        pause()
    sys.stdout.write(json.dumps(spent) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
