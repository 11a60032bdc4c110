"""A target whose stacks change shape all the time.  Plain Python, runs on 3.6+.

Usage: ``python shapes.py [DURATION=30]``.

Three threads keep calling down and back up so that a sampler sees every way a stack changes
between two samples: the innermost frames only, the depth (``climb``, random depth), the
outer frames under unchanged inner ones (``switch`` alternates two call sites with the same
callee), calls through C (``sorted`` with a Python key function) and generator frames
(``produce``).  The ready line (see _truth.py) has ``threads``.
"""

import random
import threading
import time

from _truth import duration_arg, ready, thread_record
from _work import work

DURATION = duration_arg()


def climb(depth):
    if depth <= 0:
        return work(200)
    if depth % 7 == 3:
        return sorted(range(3), key=lambda x: climb(depth - 1) - x)[0]
    return climb(depth - 1)


def produce(depth):
    for _ in range(3):
        yield climb(depth)


def switch(flag):
    if flag:
        return climb(5)
    return climb(5)


def climber(stop_at, seed):
    rng = random.Random(seed)
    while time.time() < stop_at:
        shape = rng.randrange(4)
        if shape == 0:
            climb(rng.randrange(1, 40))
        elif shape == 1:
            sum(produce(rng.randrange(1, 20)))
        elif shape == 2:
            switch(rng.randrange(2))
        else:
            work(500)


def main():
    stop_at = time.time() + DURATION
    records = {}
    started = threading.Barrier(4)

    def run(name, seed):
        records[name] = thread_record()
        started.wait()
        climber(stop_at, seed)

    threads = [threading.Thread(target=run, args=("climber-%d" % i, i), name="climber-%d" % i)
               for i in range(3)]
    for thread in threads:
        thread.start()
    started.wait()
    ready(threads=records)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
