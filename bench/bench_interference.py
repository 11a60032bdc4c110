"""Which part of sampling disturbs the target: a fixed job run alone, under spyrec, and next to
each piece of spyrec's work on its own.

    .venv/bin/python -m bench.bench_interference                       # 10 kHz, 1 thread
    .venv/bin/python -m bench.bench_interference --rate 1000 --threads 4 --modes spyrec,spyrec-noslice,null
    .venv/bin/python -m bench.bench_interference --python sid ...       # python3.15 in the sid root

Not part of the unit tests; needs the rights spyrec needs.  Each cycle runs the same work
(bench/targets/gated.py, 30 frames deep, ``--units``) once alone and once next to every mode,
in a shuffled order; a mode's slowdown is its run's time over the same cycle's run alone, and
the table gives the mean and 95% confidence interval over the cycles, for the target's wall
time and its CPU time.

Modes (each attached to the target's PID, at ``--rate`` on spyrec's grid):

* ``spyrec``: the recorder itself, writing to /dev/null.
* ``spyrec-noslice``: the recorder without its scheduler-slice request (timer slack only).
* ``null``: wakes on the grid with spyrec's timer slack and slice, and does nothing.
* ``null-c``: ``null`` in C (``bench/null_waker.c``, built with ``cc`` into a temporary
  directory): a process that only sleeps to the grid with 1 ns timer slack, no interpreter
  behind it.  What any sampler at that rate costs the target just by waking.
* ``null-step``: ``null`` plus spyrec's step-aside: it reads every target thread's ``stat``
  and moves off a CPU a runnable target thread is queued for (``StepAside``).
* ``burn``: spins ``--burn-us`` µs each interval (spyrec's CPU use, no access to the target).
* ``walk``: ``PythonProcess.sample_threads()`` only: every memory read and the decoding.
* ``chunk-pread`` / ``chunk-vm``: one read of the thread's frame chunk (3.11+) by ``pread`` on
  /proc/PID/mem / by ``process_vm_readv``: the memory traffic alone.
* ``proc``: the /proc reads of a round (wchan, schedstat, statm).

A mode written ``MODE@CPUS`` (``null-c@1``) runs pinned to those CPUs (``taskset``);
``--target-cpus`` pins the target.  Pinned apart, a helper never wakes on the target's CPU;
pinned together, it always does.
"""

import argparse
import atexit
import json
import os
import random
import shutil
import subprocess
import sys
import time

from bench.common import (DEFAULT_PYTHON, GATED, Target, alive, build_null_waker, change,
                          command_line, mean_ci, python_help, sid_root, target_cpus, target_threads)

MODES = ("spyrec", "spyrec-noslice", "null", "null-c", "null-step", "burn", "walk", "chunk-pread",
         "chunk-vm", "proc")


def interfere(mode, pid, rate, ready_path, burn_us):
    """Run one mode against ``pid`` until the target exits (the child side of this script)."""
    from spyrec.errors import SpyError
    from spyrec.interpreter import PythonProcess
    from spyrec.procstats import ProcessStats, ThreadStats
    from spyrec.scheduling import LowLatency, StepAside

    LowLatency()
    step_aside = StepAside(enabled=True)
    targets = target_threads(pid) if mode == "null-step" else []
    proc = chunk = size = None
    if mode in ("walk", "chunk-pread", "chunk-vm"):
        proc = PythonProcess.attach(pid)
        proc.sample_threads()
        memos = list(getattr(proc.walker, "_memos", {}).values())
        if memos:
            chunk, size = memos[0].chunk, len(memos[0].buf)
        elif mode != "walk":
            sys.exit("%s needs a 3.11+ target" % mode)
    thread = ThreadStats("/proc", pid, pid)
    process = ProcessStats("/proc", pid)
    with open(ready_path, "w") as f:
        f.write("ready")
    interval = int(1e9 / rate)
    next_round = time.monotonic_ns()
    rounds = 0
    while True:
        now = time.monotonic_ns()
        if next_round > now:
            time.sleep((next_round - now) / 1e9)
        try:
            if mode == "burn":
                end = time.monotonic_ns() + burn_us * 1000
                while time.monotonic_ns() < end:
                    pass
            elif mode == "walk":
                proc.sample_threads()
            elif mode == "chunk-pread":
                os.pread(proc.mem.mem.fd, size, chunk)
            elif mode == "chunk-vm":
                proc.mem.vm.read(chunk, size)
            elif mode == "null-step":
                step_aside.check(target_cpus(targets))
            elif mode == "proc":
                thread.refresh()
                process.rss_bytes()
        except (OSError, SpyError):
            break
        next_round += interval
        done = time.monotonic_ns()
        if done - next_round > interval:
            next_round += (done - next_round) // interval * interval
        rounds += 1
        if rounds % 100 == 0 and not alive(pid):
            break


def child_command(mode, pid, rate, ready_path, burn_us):
    """The command that runs ``mode`` next to ``pid`` in a process of its own (this module's
    ``--child``); it writes ``ready_path`` once at work."""
    return [sys.executable, "-m", "bench.bench_interference", "--child", mode, str(pid),
            str(rate), ready_path, str(burn_us)]


def start_helper(mode, pid, rate, workdir, burn_us=25.0):
    """Start ``mode`` next to the target ``pid`` and return its process once it is at work
    (None for ``alone``).  ``null-c`` needs ``build_null_waker(workdir)`` first."""
    if mode == "alone":
        return None
    mode, _, cpus = mode.partition("@")
    pinned = ["taskset", "-c", cpus] if cpus else []
    ready = os.path.join(workdir, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    if mode.startswith("spyrec"):
        cmd = [sys.executable, "-m", "spyrec", "-q", "-o", os.devnull, "-r", str(rate),
               "-p", str(pid)]
        if mode == "spyrec-noslice":
            cmd = [sys.executable, "-c", NOSLICE] + cmd[3:]
        helper = subprocess.Popen(pinned + cmd)
        time.sleep(1.0)  # attached and sampling (no file to watch: the output is /dev/null)
        return helper
    if mode == "null-c":
        cmd = [os.path.join(workdir, "null_waker"), str(pid), str(rate), ready]
    else:
        cmd = child_command(mode, pid, rate, ready, burn_us)
    helper = subprocess.Popen(pinned + cmd)
    deadline = time.monotonic() + 20
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    return helper


def stop_helper(helper):
    """Wait for a helper to see its target gone and exit (killed after 30 s)."""
    if helper is None:
        return
    try:
        helper.wait(timeout=30)
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.wait()


def one_run(python, mode, args, workdir):
    """(wall s, CPU s) of the target's fixed work next to ``mode`` (or alone)."""
    argv = python.argv(GATED, ["--work", str(args.units), "--threads", str(args.threads)])
    if args.target_cpus:
        argv = ["taskset", "-c", args.target_cpus] + argv
    target = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    json.loads(target.stdout.readline())
    helper = start_helper(mode, target.pid, args.rate, workdir, args.burn_us)
    target.stdin.write(b"go\n")
    target.stdin.flush()
    result = json.loads(target.stdout.readline())
    target.wait()
    stop_helper(helper)
    return result["elapsed"], result["cpu"]


#: spyrec with its scheduler-slice request left out (the timer slack stays).
NOSLICE = r"""
import ctypes, sys
import spyrec.sampler as sampler
import spyrec.scheduling as scheduling


class SlackOnly:
    realtime = False

    def __init__(self, realtime=False):
        ctypes.CDLL(None).prctl(scheduling.PR_SET_TIMERSLACK, 1, 0, 0, 0)

    def step_down(self):
        pass

    def restore(self):
        pass


sampler.LowLatency = SlackOnly
sys.argv[0] = "spyrec"
from spyrec.cli import main
main()
"""


def add_target_options(parser):
    """``--python`` and ``--sid-root``: which Python runs the target."""
    parser.add_argument("--python", default=DEFAULT_PYTHON,
                        help=python_help(default=DEFAULT_PYTHON, sid=True))
    parser.add_argument("--sid-root", default=sid_root())


def chosen_modes(parser, text, known):
    """The modes of a comma-separated ``--modes`` (each maybe ``@CPUS``); an unknown one is a
    usage error."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m.partition("@")[0] not in known]
    if unknown:
        parser.error("unknown mode(s): %s (known: %s)" % (", ".join(unknown), ", ".join(known)))
    return modes


def prepare_workdir(name, modes):
    """A scratch directory for one bench run (removed at exit), with the null waker built if
    a mode needs it."""
    workdir = "/tmp/spybench-%s-%d" % (name, os.getpid())
    os.makedirs(workdir, exist_ok=True)
    atexit.register(shutil.rmtree, workdir, True)
    if any(m.partition("@")[0] == "null-c" for m in modes):
        build_null_waker(workdir)
    return workdir


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, pid, rate, ready, burn = sys.argv[2:7]
        interfere(mode, int(pid), float(rate), ready, float(burn))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_target_options(parser)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--units", type=int, default=60_000, help="work units (~2-4 s)")
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--modes", default="spyrec,null,burn,walk,chunk-pread,chunk-vm,proc")
    parser.add_argument("--burn-us", type=float, default=25.0)
    parser.add_argument("--target-cpus", help="pin the target to these CPUs (taskset list)")
    args = parser.parse_args()
    modes = chosen_modes(parser, args.modes, MODES)
    workdir = prepare_workdir("interference", modes)
    target = Target.chosen(args.python, args.sid_root)
    ratios = {m: ([], []) for m in modes}
    rng = random.Random(1)
    started = time.monotonic()
    for cycle in range(args.cycles):
        order = ["alone"] + modes
        rng.shuffle(order)
        got = {m: one_run(target, m, args, workdir) for m in order}
        for m in modes:
            ratios[m][0].append(change(got[m][0], got["alone"][0]))
            ratios[m][1].append(change(got[m][1], got["alone"][1]))
        print("cycle %d: %s" % (cycle + 1, ", ".join("%s %+.1f%%" % (m, 100 * ratios[m][0][-1])
                                                     for m in modes)), file=sys.stderr, flush=True)
    print("Command: `%s`; %d cycles, %d thread(s), %d Hz; %.1f min.\n"
          % (command_line("bench.bench_interference"), args.cycles, args.threads, args.rate,
             (time.monotonic() - started) / 60))
    print("| next to | target wall time | target CPU time |")
    print("|---|---:|---:|")
    for m in modes:
        wall, wall_hw = mean_ci(ratios[m][0])
        cpu, cpu_hw = mean_ci(ratios[m][1])
        print("| %s | %+.1f%% ± %.1f | %+.1f%% ± %.1f |" % (m, 100 * wall, 100 * wall_hw,
                                                          100 * cpu, 100 * cpu_hw))


if __name__ == "__main__":
    main()
