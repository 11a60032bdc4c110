"""A thread pool under steady load, next to idle threads that poll: a small server's shape.

Usage: ``python busy_pool.py [SECONDS=8]``.  64 pool workers take batches of eight jobs (JSON,
then SHA-256 in a loop) every few milliseconds; 40 more threads wake every half second and
sleep again.  Most threads are asleep at any moment, but some wake every millisecond or so.
"""

import concurrent.futures
import hashlib
import json
import random
import sys
import threading
import time


def handle(n):
    data = json.dumps({"items": [random.random() for _ in range(200)]}).encode()
    for _ in range(n):
        data = hashlib.sha256(data).digest() * 8
    return len(data)


def idle_poller(stop):
    while not stop.wait(0.5):
        pass


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
    stop = threading.Event()
    for _ in range(40):
        threading.Thread(target=idle_poller, args=(stop,), daemon=True).start()
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        end = time.time() + seconds
        while time.time() < end:
            futures = [pool.submit(handle, random.randint(50, 400)) for _ in range(8)]
            for future in futures:
                future.result()
            time.sleep(0.004)
    stop.set()


if __name__ == "__main__":
    main()
