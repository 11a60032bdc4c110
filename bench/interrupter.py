"""A target's main thread interrupted at a rate, as spyrec's copies interrupt it, and nothing
else: a CPU-clock event of the thread running a program that returns at once, for SECONDS.
bench_native runs it next to spyrec ("interrupts only"): what the interrupts alone cost the
target, measured the same way.  Needs root.

    .venv/bin/python -m bench.interrupter PID RATE SECONDS
"""

import sys
import time

from bench.bench_interrupt_cost import null_program, open_event
from spyrec import bpf


def main():
    try:
        pid, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    except (IndexError, ValueError):
        sys.exit("usage: python -m bench.interrupter PID RATE SECONDS")
    event = open_event(pid, int(1e9 / rate), null_program(False), 0)
    bpf.enable(event)
    time.sleep(seconds)
    print("interrupter: %g s at %g Hz" % (seconds, rate), file=sys.stderr)


if __name__ == "__main__":
    main()
