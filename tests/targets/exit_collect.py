"""A program that ends holding many reference cycles: the interpreter frees them in its last
collections as it finalizes, running C code with no Python frame left on the stack (pylint's
last second, a large program's last moments).  Plain Python, runs on 3.8+.

Usage: ``python exit_collect.py [CYCLES=1000000]``.

Builds CYCLES lists that each hold themselves, kept in a module global, and ends.
"""

import sys

CYCLES = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
kept = []
for _ in range(CYCLES):
    cycle = []
    cycle.append(cycle)
    kept.append(cycle)
