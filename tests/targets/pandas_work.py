"""pandas at work: a frame built, grouped, merged and written out, over and over; every call
goes between Python and C many times.  Needs pandas (the project's own environment has it).

Usage: ``python pandas_work.py [DURATION=30]``.  The main thread loops in ``work``.
"""

import time

import numpy as np
import pandas as pd

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()


def work(rounds):
    rng = np.random.default_rng(7)
    for _ in range(rounds):
        frame = pd.DataFrame({"key": rng.integers(0, 50, 2000), "value": rng.random(2000),
                              "name": ["n%d" % i for i in range(2000)]})
        totals = frame.groupby("key")["value"].agg(["sum", "mean", "count"]).reset_index()
        joined = frame.merge(totals, on="key")
        joined["name"].str.upper().value_counts().head()
        joined.to_json()


def main():
    ready(main=thread_record())
    deadline = time.time() + DURATION
    while time.time() < deadline:
        work(5)


if __name__ == "__main__":
    main()
