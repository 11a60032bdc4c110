"""What a CPU-clock interrupt costs the thread it interrupts, the price of a stack copy.

    .venv/bin/python -m bench.bench_interrupt_cost [--periods 5000,1000,500,100] [--pairs 500]

Not part of the unit tests; needs root.  spyrec copies a running thread's stack at a CPU-clock
interrupt (spyrec.stackcapture): the program costs a few microseconds a run (the kernel's
``bpf_stats_enabled`` count, see bench_stack_copies), but the interrupt itself is paid too, and
in a virtual machine it can cost more than the program.  This measures the interrupt alone: a
CPU-clock event of this process's thread, as spyrec opens one for each thread of a target,
running a program that returns at once, period P µs of the thread's CPU time, switched on and
off around runs of the same fixed Python loop, in pairs (on/off, then off/on), so that slow
drifts of the machine cancel.  Per period it prints the mean ratio
on/off with a 95% interval, and the cost of one interrupt it implies.
"""

import argparse
import os
import statistics
import threading
import time

from bench.common import command_line
from spyrec import bpf

NULL_PROGRAM = "spyrec_null"


def loop(n=300_000):
    x = 0
    for i in range(n):
        x += i * i
    return x


def measure(period_us, pairs):
    """(mean on/off ratio - 1, its 95% half-width, µs per interrupt, the loop's seconds)."""
    code = bpf.Assembler()
    code.mov_imm(bpf.R0, 0)
    code.exit()
    prog = bpf.load_program(code.code(), NULL_PROGRAM)
    event = bpf.open_cpu_clock(threading.get_native_id(), period_us * 1000, prog)
    ratios, off_times = [], []
    try:
        for k in range(pairs):
            took = {}
            for on in ((True, False) if k % 2 else (False, True)):
                bpf.enable(event, on)
                start = time.perf_counter()
                loop()
                took[on] = time.perf_counter() - start
            ratios.append(took[True] / took[False])
            off_times.append(took[False])
    finally:
        os.close(event)
        os.close(prog)
    mean = statistics.mean(ratios) - 1
    half = 1.96 * statistics.stdev(ratios) / len(ratios) ** 0.5
    # the extra time per second of loop, over the interrupts a second of it takes
    per_interrupt_us = mean * 1e6 / (1e6 / period_us)
    return mean, half, per_interrupt_us, statistics.median(off_times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--periods", default="5000,1000,500,100", help="periods in µs")
    parser.add_argument("--pairs", type=int, default=500)
    args = parser.parse_args()
    print("Command: `%s`\n" % command_line("bench.bench_interrupt_cost"))
    print("| period | interrupts/s | loop slower with them | cost per interrupt |")
    print("|---:|---:|---:|---:|")
    for period in (int(p) for p in args.periods.split(",")):
        mean, half, per, loop_s = measure(period, args.pairs)
        print("| %d µs | %d | %+.2f%% ± %.2f | %.1f µs |"
              % (period, 1e6 / period, 100 * mean, 100 * half, per), flush=True)
    print("\n(each run of the loop: %.0f ms)" % (loop_s * 1e3))


if __name__ == "__main__":
    main()
