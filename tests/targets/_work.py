"""CPU-bound work shared by the targets (plain Python, runs on 3.6+): the leaves under the
functions whose share a target measures, so only those callers differ between targets."""

import time


def spin(seconds):
    """Spin for ``seconds`` of this process's CPU time."""
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        for i in range(200):
            x += i * i
    return x


def work(n):
    """A loop of ``n`` steps (a few microseconds for a few dozen)."""
    total = 0
    for i in range(n):
        total += i * i
    return total
