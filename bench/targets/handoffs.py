"""Two threads hand a token back and forth through queues: every handoff is a context switch
of each (a worst case for copies made as a thread leaves its CPU).

Usage: ``python handoffs.py SECONDS``; prints ``{"handoffs_per_s": ...}`` at the end.
"""

import json
import queue
import sys
import threading
import time


def relay(inbox, outbox, stop):
    while not stop.is_set():
        try:
            token = inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        outbox.put(token + 1)


def main():
    seconds = float(sys.argv[1])
    there, back, stop = queue.Queue(), queue.Queue(), threading.Event()
    helper = threading.Thread(target=relay, args=(there, back, stop), daemon=True)
    helper.start()
    count = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        there.put(count)
        count = back.get()
    elapsed = time.perf_counter() - start
    stop.set()
    print(json.dumps({"handoffs_per_s": count / elapsed}), flush=True)


if __name__ == "__main__":
    main()
