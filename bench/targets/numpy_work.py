"""numpy and pandas at work, for native frames: a loop of a matrix product (BLAS), a sort, an
FFT and a pandas group-by, each on data made fresh each turn.  Prints ``{"pid": ...}`` once
started, then runs for ``DURATION`` seconds (default 30), then ``{"phases": [[start, name,
nanoseconds], ...]}``: each call's start and length by its own monotonic clock.  One BLAS thread
(``OPENBLAS_NUM_THREADS=1``, set before numpy is imported) keeps the work on the main thread.
"""

import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def product(rng):
    a = rng.random((220, 220))
    return a @ a


def sort(rng):
    return np.sort(rng.random(200_000))


def spectrum(rng):
    return np.fft.fft(rng.random(1 << 16))


def grouped(rng):
    frame = pd.DataFrame({"key": rng.integers(0, 500, 60_000), "value": rng.random(60_000)})
    return frame.groupby("key")["value"].agg(["mean", "sum"])


def main():
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    rng = np.random.default_rng(1)
    print(json.dumps({"pid": os.getpid()}), flush=True)
    phases = []
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        for phase in (product, sort, spectrum, grouped):
            start = time.monotonic_ns()
            phase(rng)
            phases.append((start, phase.__name__, time.monotonic_ns() - start))
    print(json.dumps({"phases": phases}), flush=True)


if __name__ == "__main__":
    main()
