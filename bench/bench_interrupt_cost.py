"""What a CPU-clock interrupt costs the thread it interrupts, the price of a stack copy.

    .venv/bin/python -m bench.bench_interrupt_cost [--periods 5000,1000,500,100] [--pairs 500]
                                                   [--work loop|native]

Not part of the unit tests; needs root.  spyrec copies a running thread's stack at a CPU-clock
interrupt (spyrec.stackcapture): the program costs a few microseconds a run (the kernel's
``bpf_stats_enabled`` count, see bench_stack_copies), but the interrupt itself is paid too, and
in a virtual machine it can cost more than the program.  This measures the interrupt alone: a
CPU-clock event of this process's thread, as spyrec opens one for each thread of a target,
running a program that returns at once, period P µs of the thread's CPU time, switched on and
off around runs of the same fixed Python loop, in pairs (on/off, then off/on), so that slow
drifts of the machine cancel.  Per period it prints the mean ratio
on/off with a 95% interval, and the cost of one interrupt it implies.

Then, at 1,000 copies a second, what one copy costs by how it is made: by the thread's own
timed event (spyrec's copies), or armed for one interrupt by another process at each round
(``PERF_EVENT_IOC_REFRESH``, as ``spyrec --native`` does for a thread with no copy since the
last round); each with no sample, and with the kernel's sample of the user registers and
``perfstacks.STACK_BYTES`` of stack that native frames need.  ``--work native`` times
bench/targets/native_work.py's work (zlib and ``sorted`` with a Python key) instead of a
Python loop: a copy of the stack costs more where the thread's own data fills the caches.

Last, what handing the copy over costs: a program that submits a record to a BPF ring buffer at
each interrupt, waking the ring's reader (an IRQ-work interrupt of the thread's CPU,
kernel/bpf/ringbuf.c), as each copy would with the recorder emptying the ring at every round,
and waking nobody, as spyrec's program does (``bpf.RINGBUF_NO_WAKEUP``).

And what spyrec's own copies cost beyond the interrupt: this process attached to itself as a
target (``PythonProcess.attach``) with its copies at 1,000 a second (``start_capture``), the
thread's timed event switched on and off as above, its copies drained after each run, next to
the program that returns at once; without and with native frames (the registers and stack).

``--program-only``: just the time spyrec's program takes a copy, as the kernel counts it
(``kernel.bpf_stats_enabled``, set for the run), with the loop run under ``--depths`` Python
frames, without and with the identities of the frames' code objects that it copies while code
objects are made where others were (``StackCapture.identify``).
"""

import argparse
import mmap
import os
import statistics
import struct
import threading
import time
import zlib

from bench.common import command_line
from bench.targets.native_work import DATA, negate
from spyrec import bpf, perfstacks
from spyrec.interpreter import PythonProcess
from spyrec.stackcapture import ARM_PERIOD_NS, PROGRAM_NAME

NULL_PROGRAM = "spyrec_null"


def python_loop(n=300_000):
    x = 0
    for i in range(n):
        x += i * i
    return x


def native_work(n=25):
    """bench/targets/native_work.py's loop, ``n`` times over."""
    for _ in range(n):
        zlib.compress(DATA, 6)
        sorted(range(300), key=negate)


WORK = {"loop": python_loop, "native": native_work}
loop = python_loop


def null_program(copies):
    """A program that returns at once: non-zero when ``copies`` (a sample written, and an
    armed event's interrupt counted: from 6.10 only those are, kernel/events/core.c)."""
    code = bpf.Assembler()
    code.mov_imm(bpf.R0, 1 if copies else 0)
    code.exit()
    return bpf.load_program(code.code(), NULL_PROGRAM)


#: bpf_ringbuf_submit's BPF_RB_FORCE_WAKEUP (include/uapi/linux/bpf.h): wake the ring's reader
#: at every record, as each copy would with the recorder emptying the ring at every round.
RINGBUF_FORCE_WAKEUP = 2


def handover_program(ring_fd, flags):
    """A program that hands an 8-byte record to ring ``ring_fd``, submitted with ``flags``."""
    code = bpf.Assembler()
    code.load_map(bpf.R1, ring_fd)
    code.mov_imm(bpf.R2, 8)
    code.mov_imm(bpf.R3, 0)
    code.call(bpf.RINGBUF_RESERVE)
    code.jump_if_imm("==", bpf.R0, 0, "out")
    code.mov(bpf.R1, bpf.R0)
    code.mov_imm(bpf.R2, flags)
    code.call(bpf.RINGBUF_SUBMIT)
    code.label("out")
    code.mov_imm(bpf.R0, 0)
    code.exit()
    return bpf.load_program(code.code(), NULL_PROGRAM)


def measure_handover(pairs, flags, period_us=1000):
    """As ``measure``, the program handing a record over at each interrupt (the ring emptied
    after each run of the work): (mean, half-width, µs per interrupt)."""
    ring_bytes = 1 << 20
    ring_fd = bpf.create_map(bpf.MAP_TYPE_RINGBUF, 0, 0, ring_bytes)
    ring = bpf.RingBuffer(ring_fd, ring_bytes)
    prog = handover_program(ring_fd, flags)
    event = open_event(threading.get_native_id(), period_us * 1000, prog, 0)

    def switch(on):
        bpf.enable(event, on)
        if not on:
            for _ in ring.records():
                pass
            ring.consume()
    try:
        mean, half, _, _ = paired(switch, pairs)
    finally:
        os.close(event)
        os.close(prog)
        ring.close()
        os.close(ring_fd)
    return mean, half, mean * period_us


def measure_spyrec(pairs, native):
    """As ``measure``, at 1,000 copies a second by spyrec's own program (and, ``native``, the
    kernel's sample of registers and stack), this process its target: (mean, half-width, µs
    per copy, copies drained)."""
    tid = threading.get_native_id()
    proc = PythonProcess.attach(os.getpid())
    drained = 0
    try:
        proc.sample_threads()
        proc.start_capture(1000, native)
        capture = proc.capture
        capture.watch(proc.walker.tstates)
        event = capture._events[tid]
        bpf.enable(event, False)

        def switch(on):
            nonlocal drained
            bpf.enable(event, on)
            if not on:
                drained += len(capture.drain())
        mean, half, _, _ = paired(switch, pairs)
    finally:
        proc.close()
    return mean, half, mean * 1000, drained


STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def under(frames, work):
    """``work()`` run under ``frames`` more Python frames."""
    return work() if frames <= 0 else under(frames - 1, work)


def measure_program(depth, seconds=1.0):
    """{identities copied: the program's mean ns a run} with the loop run ``depth`` frames
    deep, spyrec's copies of this process at 1,000 a second."""
    proc = PythonProcess.attach(os.getpid())
    found = {}
    try:
        proc.sample_threads()
        proc.start_capture(1000, False)
        capture = proc.capture
        capture.watch(proc.walker.tstates)
        for identify in (False, True):
            capture.identify(identify)
            before = bpf.program_stats(PROGRAM_NAME) or (0, 0)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                under(depth - 4, loop)  # (the bench's own frames: about four)
                capture.drain()
            after = bpf.program_stats(PROGRAM_NAME) or (0, 0)
            runs = after[0] - before[0]
            found[identify] = (after[1] - before[1]) / runs if runs else float("nan")
    finally:
        proc.close()
    return found


def open_event(tid, period_ns, prog, stack):
    if not stack:
        return bpf.open_cpu_clock(tid, period_ns, prog)
    return bpf.open_cpu_clock(tid, period_ns, prog, perfstacks.SAMPLE_TYPE,
                              perfstacks.REGS_MASK, stack, backward=True)


def paired(switch, pairs):
    """(mean on/off ratio - 1, its 95% half-width, the loop's seconds, seconds on)."""
    ratios, off_times, on_s = [], [], 0.0
    for k in range(pairs):
        took = {}
        for on in ((True, False) if k % 2 else (False, True)):
            switch(on)
            start = time.perf_counter()
            loop()
            took[on] = time.perf_counter() - start
            switch(False)
        ratios.append(took[True] / took[False])
        off_times.append(took[False])
        on_s += took[True]
    mean = statistics.mean(ratios) - 1
    half = 1.96 * statistics.stdev(ratios) / len(ratios) ** 0.5
    return mean, half, statistics.median(off_times), on_s


def measure(period_us, pairs, stack=0):
    """(mean on/off ratio - 1, its 95% half-width, µs per interrupt, the loop's seconds)."""
    prog = null_program(stack)
    event = open_event(threading.get_native_id(), period_us * 1000, prog, stack)
    ring = perfstacks.SampleRing(event) if stack else None
    try:
        mean, half, loop_s, _ = paired(lambda on: bpf.enable(event, on), pairs)
    finally:
        if ring is not None:
            ring.close()
        os.close(event)
        os.close(prog)
    # the extra time per second of loop, over the interrupts a second of it takes
    return mean, half, mean * period_us, loop_s


def measure_armed(pairs, stack, rate=1000):
    """As ``measure``, the event armed ``rate`` times a second by another process while the
    loop runs: (mean, half-width, µs per copy, arms a second)."""
    shared = mmap.mmap(-1, 24)  # the loop's state (0 off, 1 on, 2 done), ready, arms while on
    tid = threading.get_native_id()
    prog = null_program(True)
    child = os.fork()
    if child == 0:
        try:
            event = open_event(tid, ARM_PERIOD_NS, prog, stack)
            ring = perfstacks.SampleRing(event) if stack else None  # (kept: the kernel's ring)
            struct.pack_into("<Q", shared, 8, 1)
            arms = 0
            while shared[0] != 2:
                if shared[0] == 1:
                    bpf.refresh(event)
                    arms += 1
                    struct.pack_into("<Q", shared, 16, arms)
                time.sleep(1 / rate)
            del ring
        finally:
            os._exit(0)
    try:
        while struct.unpack_from("<Q", shared, 8)[0] != 1:
            time.sleep(0.01)
        mean, half, _, on_s = paired(lambda on: shared.__setitem__(0, 1 if on else 0), pairs)
    finally:
        shared[0] = 2
        os.waitpid(child, 0)
        os.close(prog)
    per_s = struct.unpack_from("<Q", shared, 16)[0] / on_s
    return mean, half, mean * 1e6 / per_s, per_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--periods", default="5000,1000,500,100", help="periods in µs")
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--work", choices=sorted(WORK), default="loop")
    parser.add_argument("--program-only", action="store_true")
    parser.add_argument("--depths", default="12,64,200", help="Python frames (--program-only)")
    args = parser.parse_args()
    global loop
    loop = WORK[args.work]
    print("Command: `%s`\n" % command_line("bench.bench_interrupt_cost"))
    if args.program_only:
        with open(STATS_SYSCTL) as f:
            stats_were = f.read().strip()
        with open(STATS_SYSCTL, "w") as f:
            f.write("1")
        try:
            print("| frames | the program a copy | with the code objects' identities |")
            print("|---:|---:|---:|")
            for depth in (int(d) for d in args.depths.split(",")):
                found = measure_program(depth)
                print("| %d | %.2f µs | %.2f µs |" % (depth, found[False] / 1e3, found[True] / 1e3),
                      flush=True)
        finally:
            with open(STATS_SYSCTL, "w") as f:
                f.write(stats_were)
        return
    periods = [int(p) for p in args.periods.split(",") if p]
    if periods:
        print("| period | interrupts/s | loop slower with them | cost per interrupt |")
        print("|---:|---:|---:|---:|")
    for period in periods:
        mean, half, per, loop_s = measure(period, args.pairs)
        print("| %d µs | %d | %+.2f%% ± %.2f | %.1f µs |"
              % (period, 1e6 / period, 100 * mean, 100 * half, per), flush=True)
    if periods:
        print("\n(each run of the work: %.0f ms)" % (loop_s * 1e3))
    print("\n| copy made by | sample | loop slower | copies/s | cost per copy |")
    print("|---|---|---:|---:|---:|")
    for stack in (0, perfstacks.STACK_BYTES):
        sample = "registers, %d KiB of stack" % (stack // 1024) if stack else "none"
        mean, half, per, _ = measure(1000, args.pairs, stack)
        print("| its timed event | %s | %+.2f%% ± %.2f | 1000 | %.1f µs |"
              % (sample, 100 * mean, 100 * half, per), flush=True)
        mean, half, per, rate = measure_armed(args.pairs, stack)
        print("| an arm from another process | %s | %+.2f%% ± %.2f | %.0f | %.1f µs |"
              % (sample, 100 * mean, 100 * half, rate, per), flush=True)
    print("\n| the program at each of 1,000 interrupts a second | loop slower | cost per interrupt |")
    print("|---|---:|---:|")
    for what, flags in (("hands a record over, waking the ring's reader", RINGBUF_FORCE_WAKEUP),
                        ("hands a record over, waking nobody", bpf.RINGBUF_NO_WAKEUP)):
        mean, half, per = measure_handover(args.pairs, flags)
        print("| %s | %+.2f%% ± %.2f | %.1f µs |" % (what, 100 * mean, 100 * half, per), flush=True)
    print("\n| at each of 1,000 interrupts a second | loop slower | cost per interrupt | copies |")
    print("|---|---:|---:|---:|")
    mean, half, per, _ = measure(1000, args.pairs)
    print("| a program that returns at once | %+.2f%% ± %.2f | %.1f µs | |"
          % (100 * mean, 100 * half, per), flush=True)
    for what, native in (("spyrec's copy of the Python frames", False),
                         ("the same with the native sample (`--native`)", True)):
        mean, half, per, copies = measure_spyrec(args.pairs, native)
        print("| %s | %+.2f%% ± %.2f | %.1f µs | %d |"
              % (what, 100 * mean, 100 * half, per, copies), flush=True)


if __name__ == "__main__":
    main()
