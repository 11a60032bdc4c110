"""Where a sampled target loses time: the kernel's scheduler trace of the target next to spyrec.

    .venv/bin/python -m bench.bench_stalls                         # 4 threads, 1 kHz, 3.12
    .venv/bin/python -m bench.bench_stalls --python sid --modes alone,null-c,spyrec --repeats 3

Not part of the unit tests; needs root (it mounts tracefs at /sys/kernel/tracing if nothing is
there, and turns the ``sched`` events on and off again).

Four threads sharing the GIL run one at a time, so the target makes no progress whenever no
thread of it is on a CPU: a *stall*.  Slowdown figures of 1% drown in this machine's noise
(see docs/benchmarks.md); the trace measures the stalls themselves, and says what caused each.
For every mode (``alone``, and the modes of bench_interference.py: ``spyrec``, ``null``,
``null-c``, ``null-step``, ...) the target (bench/targets/gated.py, 30 frames deep) runs
with the helper for a settling second, then ``--seconds`` of ``sched_switch``,
``sched_wakeup`` and ``sched_migrate_task`` events are recorded and read back:

* **target CPUs**: the target's threads' time on a CPU, per second (1.0: one thread always on).
* **stalled**: share of the time with no target thread on any CPU, split by what began or
  ended it:
  - *taken by the helper*: the last running target thread was preempted by the helper (it
    woke on that thread's CPU); the count per second and the mean length are given too;
  - *hand-off behind the helper*: the running thread blocked (a GIL hand-off) and the next
    one got a CPU only when the helper left it;
  - *hand-off*: the same, the next thread waking on an idle CPU (the hand-off's own cost);
  - *other*: anything else (other tasks, kernel threads).
* **helper wake-ups on a target CPU**: of the helper's wake-ups per second, the share that
  took a CPU a target thread was running on; and for those, the time from taking it to
  leaving it again (spyrec steps aside, see ``spyrec.scheduling.StepAside``).

This kernel does not always trace the switch from the idle task to the task it wakes: such a
switch is put back at the task's wake-up on that CPU, which the switch that follows proves.
"""

import argparse
import bisect
import collections
import os
import random
import re
import statistics
import subprocess
import sys
import time

from bench.bench_interference import (MODES, add_target_options, chosen_modes, prepare_workdir,
                                      start_helper, stop_helper)
from bench.common import GATED, Target, command_line, task_ids

TRACEFS = "/sys/kernel/tracing"
EVENTS = ("sched_switch", "sched_wakeup", "sched_migrate_task")
LINE = re.compile(r"^\s*(.+?)-\d+\s+\[(\d+)\]\s+\S+\s+(\d+\.\d+): (\w+): (.*)")
SWITCH = re.compile(r"prev_pid=(\d+) .*?prev_state=(\S+) ==> .*?next_pid=(\d+)")
WAKEUP = re.compile(r"pid=(\d+) .*?target_cpu=(\d+)")


class Tracer:
    """The kernel's scheduler events, through tracefs."""

    def __init__(self, root=TRACEFS):
        self.root = root
        if not os.path.exists(os.path.join(root, "trace")):
            subprocess.run(["mount", "-t", "tracefs", "nodev", root], check=True)

    def _write(self, name, value):
        with open(os.path.join(self.root, name), "w") as f:
            f.write(value)

    def record(self, seconds):
        """The text of ``seconds`` of scheduler events on every CPU."""
        self._write("tracing_on", "0")
        self._write("trace", "")
        self._write("buffer_size_kb", "16384")
        try:
            for event in EVENTS:
                self._write("events/sched/%s/enable" % event, "1")
            self._write("tracing_on", "1")
            time.sleep(seconds)
            self._write("tracing_on", "0")
            with open(os.path.join(self.root, "trace")) as f:
                return f.read()
        finally:
            self._write("tracing_on", "0")
            for event in EVENTS:
                self._write("events/sched/%s/enable" % event, "0")
            self._write("trace", "")


def parse(text):
    """Switches as (t, cpu, prev, prev_state, next) and wake-ups as (t, pid, cpu, moved), in
    order; ``moved`` marks the wake-up that completes a migration (a stopper thread's)."""
    switches, wakeups = [], []
    for line in text.splitlines():
        m = LINE.search(line)
        if not m:
            continue
        current, cpu, t, event, rest = (m.group(1), int(m.group(2)), float(m.group(3)),
                                        m.group(4), m.group(5))
        if event == "sched_switch":
            s = SWITCH.search(rest)
            switches.append((t, cpu, int(s.group(1)), s.group(2), int(s.group(3))))
        elif event == "sched_wakeup":
            w = WAKEUP.search(rest)
            wakeups.append((t, int(w.group(1)), int(w.group(2)), current.startswith("migration/")))
    return switches, wakeups


def restore_idle_exits(switches, wakeups):
    """Put back the switches out of idle that the trace lacks (see the module docstring)."""
    woke = {}
    events = sorted([(t, 0, (pid, cpu)) for t, pid, cpu, _ in wakeups]
                    + [(s[0], 1, s) for s in switches], key=lambda e: (e[0], e[1]))
    current, last_switch, whole = {}, {}, []
    for t, kind, data in events:
        if kind == 0:
            woke[data] = t
            continue
        _, cpu, prev, _, nxt = data
        if cpu in current and current[cpu] != prev:
            start = max(woke.get((prev, cpu), 0.0), last_switch.get(cpu, 0.0))
            whole.append((start, cpu, current[cpu], "S", prev))
        current[cpu] = nxt
        last_switch[cpu] = t
        whole.append(data)
    whole.sort(key=lambda s: s[0])
    return whole


def analyse(switches, wakeups, target_tids, helper_tids):
    """The figures of the module docstring for one trace."""
    switches = restore_idle_exits(switches, wakeups)
    cpus = sorted({s[1] for s in switches})
    running, start = first_known(switches, cpus)
    end = switches[-1][0]
    span = end - start
    time_on, stalls, took = follow_stalls(switches, running, start, target_tids, helper_tids)
    helper_wakes, on_target = wakes_on_target(switches, wakeups, cpus, start, end, target_tids,
                                              helper_tids)
    return {
        "target_cpus": time_on["target"] / span,
        "helper_cpus": time_on["helper"] / span,
        "stalled": sum(sum(v) for v in stalls.values()) / span,
        "causes": {cause: (sum(v) / span, len(v) / span, statistics.mean(v))
                   for cause, v in stalls.items()},
        "helper_wakes": helper_wakes / span,
        "on_target": on_target / helper_wakes if helper_wakes else 0.0,
        "took_p50": statistics.median(took) if took else None,
    }


def first_known(switches, cpus):
    """({cpu: the task on it}, the moment from which every CPU's task is known)."""
    running = {}
    start = None
    for t, cpu, prev, _, _ in switches:
        running.setdefault(cpu, prev)
        if len(running) == len(cpus):
            start = t
            break
    return running, start


def follow_stalls(switches, running, start, target_tids, helper_tids):
    """Replay the switches from ``start``: ({"target", "helper": CPU seconds}, {cause: stall
    lengths}, [times from the helper taking a target thread's CPU to leaving it])."""
    def on_cpu(tid_set):
        return sum(1 for tid in running.values() if tid in tid_set)

    time_on = {"target": 0.0, "helper": 0.0}
    stalls = collections.defaultdict(list)  # cause -> lengths
    stall_start = stall_cause = None
    took_at = {}  # cpu -> when the helper took it from a target thread
    took = []
    last = start
    for t, cpu, prev, state, nxt in switches:
        if t < start:
            running[cpu] = nxt
            continue
        time_on["target"] += on_cpu(target_tids) * (t - last)
        time_on["helper"] += on_cpu(helper_tids) * (t - last)
        last = t
        before = on_cpu(target_tids)
        running[cpu] = nxt
        after = on_cpu(target_tids)
        if prev in target_tids and state.startswith("R") and nxt in helper_tids:
            took_at[cpu] = t
        if prev in helper_tids and cpu in took_at:
            took.append(t - took_at.pop(cpu))
        if before and not after:
            stall_start = t
            if state.startswith("R"):
                stall_cause = "taken by the helper" if nxt in helper_tids else "other"
            else:
                stall_cause = "hand-off"
        elif after and not before and stall_start is not None:
            stalls[ended_stall(stall_cause, prev, helper_tids)].append(t - stall_start)
            stall_start = None
    return time_on, stalls, took


def ended_stall(cause, prev, helper_tids):
    """A hand-off's cause, told by what left the CPU for the next target thread."""
    if cause == "hand-off":
        if prev in helper_tids:
            return "hand-off behind the helper"
        if prev != 0:
            return "other"
    return cause


def wakes_on_target(switches, wakeups, cpus, start, end, target_tids, helper_tids):
    """(the helper's wake-ups, those that landed on a CPU a target thread was on)."""
    timeline = {cpu: ([], []) for cpu in cpus}
    for t, cpu, _, _, nxt in switches:
        timeline[cpu][0].append(t)
        timeline[cpu][1].append(nxt)
    helper_wakes = on_target = 0
    for t, pid, cpu, moved in wakeups:
        if pid in helper_tids and not moved and start <= t <= end and cpu in timeline:
            times, tids = timeline[cpu]
            i = bisect.bisect_right(times, t) - 1
            helper_wakes += 1
            on_target += i >= 0 and tids[i] in target_tids
    return helper_wakes, on_target


def one_trace(target, mode, args, workdir, tracer):
    """Trace the target next to ``mode`` once and analyse it."""
    run_for = args.seconds + 4
    proc = subprocess.Popen(target.argv(GATED, ["--threads", str(args.threads), "--seconds",
                                                str(run_for), "--no-gate"]),
                            stdout=subprocess.PIPE)
    helper = None
    try:
        proc.stdout.readline()
        helper = start_helper(mode, proc.pid, args.rate, workdir)
        time.sleep(0.5)
        target_tids = task_ids(proc.pid) - {proc.pid}  # the workers (the main thread waits)
        helper_tids = task_ids(helper.pid) if helper else set()
        text = tracer.record(args.seconds)
    finally:
        proc.wait()
        stop_helper(helper)
    return analyse(*parse(text), target_tids, helper_tids)


CAUSES = ("taken by the helper", "hand-off behind the helper", "hand-off", "other")


def report(mode, results):
    def mean(key):
        return statistics.mean(r[key] for r in results)

    def cause(name, i):
        return statistics.mean(r["causes"].get(name, (0.0, 0.0, 0.0))[i] for r in results)

    taken = "%.3f%% (%.0f/s, %.0f µs)" % (100 * cause(CAUSES[0], 0), cause(CAUSES[0], 1),
                                         1e6 * cause(CAUSES[0], 2)) if mode != "alone" else ""
    behind = "%.3f%% (%.0f/s, %.0f µs)" % (100 * cause(CAUSES[1], 0), cause(CAUSES[1], 1),
                                          1e6 * cause(CAUSES[1], 2)) if mode != "alone" else ""
    took = [r["took_p50"] for r in results if r["took_p50"] is not None]
    print("| %s | %.3f | %.2f%% (%s) | %s | %s | %.3f%% | %.3f%% | %s | %s | %s |" % (
        mode, mean("target_cpus"), 100 * mean("stalled"),
        ", ".join("%.2f" % (100 * r["stalled"]) for r in results), taken, behind,
        100 * cause(CAUSES[2], 0), 100 * cause(CAUSES[3], 0),
        "%.0f" % mean("helper_wakes") if mode != "alone" else "",
        "%.0f%%" % (100 * mean("on_target")) if mode != "alone" else "",
        "%.0f" % (1e6 * statistics.median(took)) if took else ""), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_target_options(parser)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=2.0, help="traced seconds a run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="alone,null-c,spyrec")
    args = parser.parse_args()
    modes = chosen_modes(parser, args.modes, ("alone",) + MODES)
    workdir = prepare_workdir("stalls", modes)
    target = Target.chosen(args.python, args.sid_root)
    tracer = Tracer()
    results = collections.defaultdict(list)
    rng = random.Random(2)
    started = time.monotonic()
    for repeat in range(args.repeats):
        order = list(modes)
        rng.shuffle(order)
        for mode in order:
            results[mode].append(one_trace(target, mode, args, workdir, tracer))
        print("repeat %d/%d done" % (repeat + 1, args.repeats), file=sys.stderr, flush=True)
    print("Command: `%s`; %s, %d threads, %d Hz, %d x %.0f s "
          "traced per mode; %.1f min.\n" % (command_line("bench.bench_stalls"), target.label, args.threads,
                                             args.rate, args.repeats, args.seconds,
                                             (time.monotonic() - started) / 60))
    print("| next to | target CPUs | stalled (each run) | taken by the helper | hand-off behind "
          "the helper | hand-off | other | helper wake-ups/s | on a target thread's CPU | "
          "taken to left (p50 µs) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in modes:
        report(mode, results[mode])


if __name__ == "__main__":
    main()
