"""Tokenize and compile the standard library's ``email`` package, ROUNDS times (default 20).

    python bench/targets/tokenize_stdlib.py [ROUNDS]

A real program's work, nobody's benchmark: ``tokenize`` is a generator consumed by ``list()``
that calls short functions (``_compile``, ``re.compile``, a namedtuple's ``__new__``) on each
token, so a profiler that loses a generator's callees shows here.
"""

import email
import glob
import os
import sys
import tokenize

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
FILES = sorted(glob.glob(os.path.join(os.path.dirname(email.__file__), "**", "*.py"),
                         recursive=True))

for _ in range(ROUNDS):
    for path in FILES:
        with open(path, "rb") as source:
            list(tokenize.tokenize(source.readline))
        with open(path, "rb") as source:
            compile(source.read(), path, "exec")
