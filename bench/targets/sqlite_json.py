"""An ETL job: rows of JSON loaded into an in-memory sqlite3 table, then read back, decoded and
summed, for SECONDS.  Plain Python.

Usage: ``python sqlite_json.py [SECONDS=10]``.
"""

import json
import random
import sqlite3
import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 10
db = sqlite3.connect(":memory:")
db.execute("create table events (id integer primary key, kind text, payload text)")


def make(n):
    for i in range(n):
        yield (random.choice("abcde"), json.dumps({"i": i, "v": [random.random() for _ in range(8)],
                                                   "tags": {"k": i % 7}}))


def load(n):
    db.executemany("insert into events (kind, payload) values (?, ?)", make(n))


def aggregate():
    totals = {}
    for kind, payload in db.execute("select kind, payload from events"):
        doc = json.loads(payload)
        totals[kind] = totals.get(kind, 0.0) + sum(doc["v"])
    return totals


def main():
    end = time.time() + SECONDS
    while time.time() < end:
        load(5000)
        aggregate()
        db.execute("delete from events where id % 2 = 0")


if __name__ == "__main__":
    main()
