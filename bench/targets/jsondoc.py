"""Benchmark target: ``json.dumps(doc, indent=2)`` of a 5-deep nested document, in a loop.

    python jsondoc.py [SECONDS=3]

With ``indent`` the standard library encodes in Python: nested ``yield from`` generators
consumed by ``list()``, whose chain is taken down and rebuilt for every piece of output.  Plain
Python that runs on 3.8+.
"""

import json
import sys
import time


def make(depth):
    if depth == 0:
        return {"a": [1, 2.5, "x" * 10, None, True], "b": "hello"}
    return dict([("k%d" % i, make(depth - 1)) for i in range(3)]
                + [("list", [make(depth - 1), 1, 2])])


def main():
    doc = make(5)
    end = time.time() + float(sys.argv[1] if len(sys.argv) > 1 else 3)
    while time.time() < end:
        json.dumps(doc, indent=2)


if __name__ == "__main__":
    main()
