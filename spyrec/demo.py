"""A small workload with recognisable work in several threads, to try the recorder on.

    python -m spyrec.demo [SECONDS]

- ``MainThread`` computes primes by trial division (``count_primes`` -> ``is_prime``);
- ``json-worker`` builds, serialises and parses documents (``roundtrip_documents``);
- ``hasher`` hashes blocks of data (``hash_blocks``), mostly inside C code;
- ``sleeper`` waits on a timer (``wait_for_work``), so it shows as idle.

Every name above shows up in the recording, in the thread it belongs to.
"""

import hashlib
import json
import sys
import threading
import time


def is_prime(n):
    if n < 2:
        return False
    divisor = 2
    while divisor * divisor <= n:
        if n % divisor == 0:
            return False
        divisor += 1
    return True


def count_primes(limit):
    return sum(1 for n in range(limit) if is_prime(n))


def make_document(size):
    return {"items": [{"id": i, "name": "item-%d" % i, "tags": ["a", "b", "c"][: i % 4]}
                      for i in range(size)]}


def roundtrip_documents(deadline):
    while time.monotonic() < deadline:
        text = json.dumps(make_document(500))
        json.loads(text)


def hash_blocks(deadline):
    block = b"spyrec" * 100_000
    while time.monotonic() < deadline:
        hashlib.sha256(block).hexdigest()


def wait_for_work(deadline):
    while time.monotonic() < deadline:
        time.sleep(0.05)


def main(seconds=5.0):
    deadline = time.monotonic() + seconds
    workers = [threading.Thread(target=roundtrip_documents, args=(deadline,), name="json-worker"),
               threading.Thread(target=hash_blocks, args=(deadline,), name="hasher"),
               threading.Thread(target=wait_for_work, args=(deadline,), name="sleeper")]
    for worker in workers:
        worker.start()
    rounds = 0
    while time.monotonic() < deadline:
        count_primes(20_000)
        rounds += 1
    for worker in workers:
        worker.join()
    print("demo: %d rounds of count_primes in %.1f s" % (rounds, seconds))


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
