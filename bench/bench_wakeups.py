"""How long a process that wakes 1,000 times a second waits for a CPU next to the target.

    .venv/bin/python -m bench.bench_wakeups [--threads 1,4] [--policies slice,step,other,batch,idle]

Not part of the unit tests.  For each thread count it starts bench/targets/gated.py (30 frames
deep, CPU-bound, sharing the GIL), measures how many cores the target's threads use (their
``schedstat`` run times over the measurement), and runs a *waker* in this process for each
scheduling policy in turn: it sleeps to a 1 kHz grid with spyrec's 1 ns timer slack, then
spins ``--work-us`` (about what a spyrec round costs), like a sampler that does not read the
target.  Per policy it prints how late the waker woke (percentiles, and the share of
wake-ups later than 200 µs and than 1 ms) and how much of that it spent runnable but waiting
for a CPU (its own ``schedstat`` run delay).

At each wake-up the waker also reads every target thread's ``stat`` (state and CPU) and
counts the wake-ups on a CPU that a runnable target thread is queued for (the waker took it
from that thread), and among them those when another CPU had no runnable target thread (the
waker could have run there instead).  Policy ``step`` is ``slice`` plus spyrec's
``StepAside``, which moves the waker to such a CPU after that read.

What it shows: whether the target leaves a core free for the recorder when it wakes, and
whether the recorder wakes where that core is.  A recorder that never preempts the target
(``chrt --idle``, ``--batch``) can only sample on time as often as the waker here wakes on
time.
"""

import argparse
import ctypes
import os
import threading
import time

from bench.common import (DEFAULT_PYTHON, Target, command_line, kill, python_help, quantile,
                          sid_root, target_cpus, target_threads, task_cpu_ns)

PR_SET_TIMERSLACK = 29
#: ``slice`` is what spyrec runs with: SCHED_OTHER asking for a 100 µs slice (Linux 6.12+).
POLICIES = {"other": os.SCHED_OTHER, "slice": os.SCHED_OTHER, "step": os.SCHED_OTHER,
            "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE}


def wake(seconds, work_us, name, pid):
    """[(lateness ns, run delay ns, took a target thread's CPU, another CPU had none)] of a
    1 kHz waker under policy ``name`` for ``seconds``, next to the target ``pid``."""
    from spyrec.scheduling import LowLatency, StepAside
    os.sched_setscheduler(0, POLICIES[name], os.sched_param(0))
    if name in ("slice", "step"):
        LowLatency()
    step_aside = StepAside(enabled=True) if name == "step" else None
    cpus = os.sched_getaffinity(0)
    getcpu = ctypes.CDLL(None).sched_getcpu
    fd = os.open("/proc/self/task/%d/schedstat" % threading.get_native_id(), os.O_RDONLY)
    threads = target_threads(pid)
    try:
        def run_delay():
            return int(os.pread(fd, 128, 0).split()[1])

        rows = []
        interval = 1_000_000
        next_wake = time.monotonic_ns() + interval
        end = time.monotonic_ns() + int(seconds * 1e9)
        while next_wake < end:
            before = run_delay()
            now = time.monotonic_ns()
            if next_wake > now:
                time.sleep((next_wake - now) / 1e9)
            late = time.monotonic_ns() - next_wake
            busy = target_cpus(threads)
            took = getcpu() in busy
            rows.append((late, run_delay() - before, took, took and bool(cpus - busy)))
            if step_aside is not None:
                step_aside.check(busy)
            next_wake += interval
            if late > interval:  # skip the grid points already missed, as spyrec does
                next_wake += (late // interval) * interval
            spin_end = time.monotonic_ns() + work_us * 1000
            while time.monotonic_ns() < spin_end:
                pass
        return rows
    finally:
        for thread in threads:
            thread.close()
        os.close(fd)
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # and the default slice


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,4", help="worker-thread counts of the target")
    parser.add_argument("--policies", default="slice,step,other,batch,idle")
    parser.add_argument("--seconds", type=float, default=3.0, help="per policy")
    parser.add_argument("--work-us", type=int, default=50, help="spin after each wake-up")
    parser.add_argument("--python", default=DEFAULT_PYTHON,
                        help=python_help(default=DEFAULT_PYTHON, sid=True))
    args = parser.parse_args()
    ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    policies = args.policies.split(",")
    target = Target.chosen(args.python, sid_root())
    print("Command: `%s`\n" % command_line("bench.bench_wakeups"))
    print("| target threads | target's cores | waker policy | wake-ups "
          "| late p50 / p90 / p99 (µs) | later than 200 µs | later than 1 ms "
          "| waiting for a CPU, in wake-ups later than 200 µs (mean µs) "
          "| woke on a CPU a target thread is queued for | ... while another CPU had none |")
    print("|---:|---:|---|---:|---|---:|---:|---:|---:|---:|")
    for threads in [int(n) for n in args.threads.split(",")]:
        seconds = args.seconds * len(policies) + 5
        ready, proc = target.start(["--no-gate", "--seconds", str(seconds), "--threads",
                                    str(threads)])
        try:
            time.sleep(0.5)
            for name in policies:
                cpu_before, t_before = task_cpu_ns(ready["pid"]), time.monotonic_ns()
                rows = wake(args.seconds, args.work_us, name, ready["pid"])
                cores = (task_cpu_ns(ready["pid"]) - cpu_before) / (time.monotonic_ns() - t_before)
                late = sorted(r[0] for r in rows)
                slow = [r for r in rows if r[0] > 200_000]
                waited = sum(r[1] for r in slow) / len(slow) / 1e3 if slow else 0.0
                print("| %d | %.3f | %s | %d | %.0f / %.0f / %.0f | %.1f%% | %.1f%% | %.0f "
                      "| %.1f%% | %.1f%% |" % (
                    threads, cores, name, len(rows), quantile(late, 0.5) / 1e3,
                    quantile(late, 0.9) / 1e3, quantile(late, 0.99) / 1e3,
                    100 * len(slow) / len(rows),
                    100 * sum(1 for r in rows if r[0] > 1_000_000) / len(rows), waited,
                    100 * sum(1 for r in rows if r[2]) / len(rows),
                    100 * sum(1 for r in rows if r[3]) / len(rows)), flush=True)
        finally:
            kill(proc)


if __name__ == "__main__":
    main()
