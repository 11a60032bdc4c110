"""A dict keyed like ``threading._active``, whose last key's lookup probes more slots than the
table has.  Plain Python, runs on 3.6+.

Usage: ``python colliding_keys.py [DURATION=30]``.

Thread idents are the addresses of the threads' pthread structures: the main thread's, and
one per thread stack, 8 MiB and a guard page apart.  With these five (found by simulating
CPython's probe sequence), in an 8-slot table, the fifth is found at the eleventh probe.  The
ready line (see _truth.py) has ``dict`` (its address) and ``values``: the address of the value
under each of ``keys``.
"""

import time

from _truth import duration_arg, ready

KEYS = [0x7F9E4BA75F40, 0x7FAD9B3AB6C0, 0x7FAD9ABAA6C0, 0x7FAD9A3A96C0, 0x7FAD99BA86C0]
DURATION = duration_arg()
table = {}
for n, key in enumerate(KEYS):
    table[key] = "thread-%d" % n
ready(dict=id(table), keys=KEYS, values=[id(table[key]) for key in KEYS])
time.sleep(DURATION)
