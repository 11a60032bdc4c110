"""Rows of JSON decoded in a loop, as an ETL job reads a table.  Plain Python, runs on 3.8+.

Usage: ``python json_rows.py [DURATION=30]``.

``aggregate`` walks a list of JSON strings, ``json.loads`` each (``loads`` -> ``decode`` ->
``raw_decode``, whose C scanner takes about half the time) and sums its fields in its own
code (a fifth or so): the stack goes in and out of the same three frames, at the same
addresses, every couple of microseconds.  The ready line (see _truth.py) has ``main``.
"""

import json
import random
import time

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()
ROWS = [json.dumps({"i": i, "v": [random.random() for _ in range(8)], "tags": {"k": i % 7}})
        for i in range(2000)]


def aggregate(rows):
    totals = {}
    for n, payload in enumerate(rows):
        doc = json.loads(payload)
        key = doc["tags"]["k"]
        totals[key] = totals.get(key, 0.0) + sum(doc["v"]) + n % 3  # @aggregate-sum
    return totals


ready(main=thread_record())
deadline = time.time() + DURATION
while time.time() < deadline:
    aggregate(ROWS)
