"""Recorder benchmark: spyrec against Austin, py-spy and CPython 3.15's profiling.sampling.

    .venv/bin/python -m bench.bench_record            # default: 3 repeats, about 15 minutes
    .venv/bin/python -m bench.bench_record --quick    # one repeat, about 6 minutes
    .venv/bin/python -m bench.bench_record --full     # five repeats, 4 s of work (~45 min)
    .venv/bin/python -m bench.bench_record --breakdown-only
    .venv/bin/python -m bench.bench_record --fine-slowdown 12 [--fine-rate 1k] [--fine-variant idle]
    .venv/bin/python -m bench.bench_record --soak 600 [--soak-target varied]

Not part of the unit tests.  Needs root (or ptrace rights) like the profilers themselves.

Method (one measurement):

1. Start bench/targets/gated.py with a fixed amount of work (calibrated to ``--work-seconds``
   of baseline time).  It starts its threads, prints a ready line and blocks on standard input.
2. Attach the profiler by PID, wait until it is sampling (spyrec: its header is on disk;
   py-spy: its "Sampling process" line; profiling.sampling: its sampler module is mapped;
   Austin: started) and ``--settle`` seconds more.
3. Release the target ("go" on its stdin).  The target times its own work (wall and CPU
   time) and its own wall-time split between two leaf functions (``heavy_share``, ~75%).
4. Wait for the target, then the profiler, to exit (the target is not its child: attach
   mode).  The profiler runs under GNU time, whose %M is its own peak RSS (``ru_maxrss`` from
   ``os.wait4`` would include this bench's RSS at fork time; it is the fallback when
   /usr/bin/time is missing).  The profiler's CPU over the work window is the sum of
   /proc/PID/task/*/schedstat from go to the target's result line (read every 50 ms, as some
   profilers exit within microseconds of the target).  A target that does not finish within
   ``max(45 s, 20 x work)`` is a failed run; the profiler is killed first, since py-spy's
   blocking mode can hold it ptrace-stopped.

Runs of one target alternate: baseline, profiler, baseline, profiler, ..., baseline, with the
profilers (and rates) in a shuffled order; a profiler run's slowdown is its elapsed time over
the mean of the baselines just before and after it.  Reported values are medians over repeats.

Columns:

* samples/s/thread: stack samples whose leaf is the target's work (``heavy``, ``light``,
  ``descend``, ``worker``) over the worker threads' own busy time (each from go to its last
  unit, summed: the threads do not all finish together).
  Idle threads, start-up and shutdown samples and the profilers' idle policies drop out, so
  this is "samples delivered per second per busy thread", the same definition for every tool.
* target slowdown (wall): the target's own time for the fixed work, profiled over
  unprofiled, minus one: the issue's measure.  Other load on the machine shows up here too.
* target CPU time: the same for the CPU time the work took.  Immune to other load stealing
  the target's core; blind to a profiler that pauses the target (py-spy's default mode), so
  a wall slowdown far above it means pausing or CPU contention, not interference.
* profiler CPU: the profiler's CPU over the work window, in cores.  Peak RSS: see 4. above.
* B/sample: output bytes over all stack samples in the file, in the profiler's most compact
  format (spyrec .spy, Austin -b MOJO, py-spy raw = aggregated collapsed stacks with no
  timeline, profiling.sampling --binary).
* heavy share: measured share of ``heavy`` among ``heavy``+``light`` samples minus the
  target's own measured share, in percentage points.

Also printed: a cost breakdown of one spyrec sample (memory reads, frame decoding, /proc
metrics, interning, writing and flushing), measured in this process against live targets on
each Python given with ``--breakdown-python``, and, with ``--soak SECONDS``, the recorder's RSS
over a long 1 kHz recording.
"""


import argparse
import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench import peers
from bench.breakdown import breakdown_one, print_breakdown
from bench.common import (DEFAULT_PYTHON, REPO, SID, Target, command_line, installed, log,
                          python_help, sid_root)
from bench.fine_slowdown import FINE_VARIANTS, fine_slowdown
from bench.peers import SpyrecPeer
from bench.record_report import brief, load_results, print_report
from bench.runs import Run, calibrate, safe_measure
from bench.soak import soak

RATES = {"100": 100, "1k": 1000, "10k": 10000, "max": "max"}
#: The Pythons of the cost breakdown unless --breakdown-python says otherwise (those installed).
BREAKDOWN_PYTHONS = ("3.11", "3.12", "3.13")


def spyrec_revision():
    """The commit spyrec was measured at, flagged when spyrec/ has uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "spyrec"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" + uncommitted changes in spyrec/" if dirty else "")


#: Executables of the peers: --austin / --py-spy, else PATH, else /tmp/peers/bin.
PEER_PATHS = {}


def host_profilers(target, names):
    found = []
    for name in names:
        if name == "spyrec":
            found.append(SpyrecPeer(target))
        elif name == "austin":
            found.append(peers.Austin(PEER_PATHS.get("austin")))
        elif name == "py-spy":
            found.append(peers.PySpy(PEER_PATHS.get("py-spy"), nonblocking=False))
        elif name == "py-spy-nb":
            found.append(peers.PySpy(PEER_PATHS.get("py-spy"), nonblocking=True))
    return found


def peer_versions(target):
    """{"python": the target's version, peer: what its --version says}."""
    versions = {"python": target.version}
    for name, path in PEER_PATHS.items():
        if path:
            try:
                text = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
                versions[name] = (text.stdout or text.stderr).strip().splitlines()[0]
            except (OSError, subprocess.SubprocessError, IndexError):
                pass
    return versions


# --------------------------------------------------------------------------------------------
# The comparison

def run_group(target, profilers, threads_list, rates, repeats, work_seconds, settle, workdir, rng,
              results):
    """Alternating baseline/profiler runs for one target Python; appends Run objects."""
    usable = []
    for profiler in profilers:
        reason = profiler.available()
        if reason:
            log("%s: %s on %s" % (profiler.name, reason, target.label))
            results["skipped"].append({"target": target.label, "profiler": profiler.name,
                                       "reason": reason})
        else:
            usable.append(profiler)
    if not usable:
        return
    for threads in threads_list:
        try:
            units = calibrate(target, threads, work_seconds)
        except Exception as exc:         # a target that cannot run: report it, go on
            log("%s, %d thread(s): calibration failed: %s" % (target.label, threads, exc))
            for profiler in usable:
                run = Run(profiler, "-", threads)
                run.error = "failed: target did not run (%s)" % str(exc)[:120]
                run.extra["target"] = target.label
                results["runs"].append(run)
            continue
        log("%s, %d thread(s): %d units of work (~%.1f s)" % (target.label, threads, units, work_seconds))
        timeout = max(45.0, 20 * work_seconds)
        plan = [(rate, profiler) for _ in range(repeats) for rate in rates for profiler in usable]
        # Shuffle within each repeat so that drift spreads over every (rate, profiler).
        per_repeat = len(rates) * len(usable)
        order = []
        for r in range(repeats):
            chunk = plan[r * per_repeat:(r + 1) * per_repeat]
            rng.shuffle(chunk)
            order.extend(chunk)
        previous = safe_measure(target, threads, units, None, None, workdir, settle, timeout)
        for i, (rate, profiler) in enumerate(order):
            run = safe_measure(target, threads, units, profiler, rate, workdir, settle, timeout)
            base = safe_measure(target, threads, units, None, None, workdir, settle, timeout)
            baselines = [b.elapsed for b in (previous, base) if b.elapsed]
            run.baseline = statistics.mean(baselines) if baselines else None
            cpus = [b.cpu_time for b in (previous, base) if b.cpu_time]
            run.baseline_cpu = statistics.mean(cpus) if cpus else None
            run.extra["target"] = target.label
            previous = base
            results["runs"].append(run)
            results["baselines"].append({"target": target.label, "threads": threads,
                                         "elapsed": base.elapsed})
            log("  [%d/%d] %s %s: %s" % (i + 1, len(order), profiler.name, rate, brief(run)))



class Plan:
    """What one comparison runs: rates, thread counts, repeats, seconds of work, settle time."""

    def __init__(self, args):
        self.repeats = args.repeats or (1 if args.quick else 5 if args.full else 3)
        self.work = args.work_seconds or (1.5 if args.quick else 4.0 if args.full else 2.0)
        self.rates = [RATES[r.strip()] for r in args.rates.split(",") if r.strip()]
        self.threads = [int(t) for t in args.threads.split(",") if t.strip()]
        self.profilers = [n.strip() for n in args.profilers.split(",") if n.strip()]
        self.settle = args.settle


def compare(args, plan, rng, results, out):
    """The comparison on the host Python, then on python3.15 in the sid root; the report."""
    workdir = tempfile.mkdtemp(prefix="spybench-")
    host = Target.chosen(args.python, args.sid_root)
    profilers = host_profilers(host, [n for n in plan.profilers if n != "profiling.sampling"])
    for p in profilers:
        if isinstance(p, SpyrecPeer):
            p.probe()
    out.write("Versions: %s.\n" % ", ".join("%s %s" % kv for kv in peer_versions(host).items()))
    run_group(host, profilers, plan.threads, plan.rates, plan.repeats, plan.work, plan.settle,
              workdir, rng, results)
    compare_in_root(args, plan, rng, results)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log("outputs kept in %s" % workdir)
    print_report(results, out)
    out.flush()


def compare_in_root(args, plan, rng, results):
    """profiling.sampling and spyrec on python3.15 in the sid root, when it is there."""
    root = args.sid_root if args.sid_root and os.path.isdir(args.sid_root) else None
    tachyon = peers.Tachyon(root)
    if "profiling.sampling" in plan.profilers:
        reason = tachyon.available()
        if reason:
            results["skipped"].append({"target": "CPython 3.15", "profiler": "profiling.sampling",
                                       "reason": reason})
            log("profiling.sampling: %s" % reason)
    if not root or tachyon.available() is not None:
        return
    target315 = Target(root=root)
    target315.prepare()
    root_workdir = tempfile.mkdtemp(prefix="spybench-", dir=os.path.join(root, "tmp"))
    root_profilers = []
    if "profiling.sampling" in plan.profilers:
        root_profilers.append(tachyon)
    if "spyrec" in plan.profilers:
        spy315 = SpyrecPeer(target315)
        spy315.probe()
        root_profilers.append(spy315)
    run_group(target315, root_profilers, plan.threads, plan.rates, plan.repeats, plan.work,
              plan.settle, root_workdir, rng, results)
    if not args.keep:
        shutil.rmtree(root_workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The other modes


def breakdown_targets(args):
    """The targets of the cost breakdown: those of --breakdown-python, else the installed
    BREAKDOWN_PYTHONS and, when profiling.sampling runs there, python3.15 in the sid root
    (always last)."""
    choices = list(args.breakdown_python or [label for label in BREAKDOWN_PYTHONS
                                             if installed(label)])
    if SID in choices or (not args.breakdown_python and args.sid_root
                          and peers.Tachyon(args.sid_root).available() is None):
        choices = [c for c in choices if c != SID]
        if args.sid_root and os.path.isdir(args.sid_root):
            choices.append(SID)
    targets = []
    for choice in choices:
        try:
            targets.append(Target.chosen(choice, args.sid_root))
        except Exception as exc:
            log("breakdown: the %s target does not run: %s" % (choice, exc))
    return targets


def breakdown(args, out):
    """The cost breakdown of one sampling round on each breakdown target, 1 and 4 threads."""
    found = []
    for target in breakdown_targets(args):
        for threads in (1, 4):
            try:
                log("breakdown: %s, %d thread(s)" % (target.label, threads))
                found.append(breakdown_one(target, threads, args.breakdown_iterations))
            except Exception as exc:     # report, do not crash the whole bench
                log("breakdown on %s failed: %s: %s" % (target.label, type(exc).__name__, exc))
                out.write("\nbreakdown on %s, %d threads: failed: %s\n" % (target.label, threads, exc))
    if found:
        print_breakdown(found, out)
    return found


def fine(args, plan, results, out):
    """Only the fine slowdown measurement."""
    workdir = tempfile.mkdtemp(prefix="spybench-")
    try:
        target = Target.chosen(args.python, args.sid_root)
        results["fine"] = fine_slowdown(target, plan.threads, RATES[args.fine_rate],
                                        args.fine_slowdown, plan.work, plan.settle, workdir,
                                        0.01 if args.fine_rate == "1k" else 0.05, out,
                                        args.fine_variant)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one repeat, 1.5 s of work (~5 min)")
    mode.add_argument("--full", action="store_true", help="five repeats, 4 s of work (~40 min)")
    p.add_argument("--repeats", type=int, help="runs per (target, rate, profiler); default 3")
    p.add_argument("--work-seconds", type=float, help="baseline duration of the fixed work; default 2")
    p.add_argument("--settle", type=float, default=0.5,
                   help="seconds between the profiler being ready and the go signal")
    p.add_argument("--rates", default="100,1k,10k,max", help="from 100, 1k, 10k, max")
    p.add_argument("--threads", default="1,4", help="worker-thread counts of the target")
    p.add_argument("--python", default=DEFAULT_PYTHON,
                   help=python_help("host Python of the targets", DEFAULT_PYTHON, sid=True))
    p.add_argument("--profilers", default="spyrec,austin,py-spy,py-spy-nb,profiling.sampling")
    p.add_argument("--austin", help="Austin executable (default: PATH, then /tmp/peers/bin)")
    p.add_argument("--py-spy", dest="py_spy",
                   help="py-spy executable (default: PATH, then /tmp/peers/bin)")
    p.add_argument("--sid-root", default=sid_root(), help="root holding python3.15 ('' to skip)")
    p.add_argument("--breakdown-python", action="append",
                   help="Python for the cost breakdown, as --python (repeatable; 'sid' for "
                        "python3.15 in the sid root); default %s where installed, and the sid "
                        "root's 3.15" % ", ".join(BREAKDOWN_PYTHONS))
    p.add_argument("--breakdown-iterations", type=int, default=3000)
    p.add_argument("--breakdown-only", action="store_true")
    p.add_argument("--no-breakdown", action="store_true")
    p.add_argument("--fine-slowdown", type=int, metavar="CYCLES",
                   help="only a fine slowdown measurement of spyrec: CYCLES cycles of (alone, null "
                        "co-runner, spyrec at --fine-rate), with 95%% confidence intervals")
    p.add_argument("--fine-rate", default="1k", help="rate for --fine-slowdown (default 1k)")
    p.add_argument("--fine-variant", default="idle", choices=sorted(FINE_VARIANTS),
                   help="the fourth run of each --fine-slowdown cycle: spyrec under chrt "
                        "--idle 0 (default), spyrec with StepAside off, the null "
                        "co-runner in C (needs cc), spyrec with or without copies at "
                        "interrupts (bpf, no-bpf), or with native frames (native)")
    p.add_argument("--soak", type=int, metavar="SECONDS",
                   help="only the soak: record at 1 kHz for SECONDS and follow the RSS")
    p.add_argument("--soak-target", choices=("deep", "varied"), default="deep")
    p.add_argument("--soak-rate", type=int, default=1000)
    p.add_argument("--soak-csv", help="write the soak's RSS samples here")
    p.add_argument("--json", help="write every run's raw figures here")
    p.add_argument("--report", metavar="JSON",
                   help="print the tables again from a file written by --json, and stop")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the profilers' output files")
    return p


def terminated(signum, _frame):
    """Clean up targets and profilers on SIGTERM too."""
    raise SystemExit("bench_record: terminated by signal %d" % signum)


def main():
    args = parser().parse_args()
    out = sys.stdout
    signal.signal(signal.SIGTERM, terminated)
    if args.report:
        results = load_results(args.report)
        print_report(results, out)
        if results.get("breakdown"):
            print_breakdown(results["breakdown"], out)
        return
    if args.soak:
        soak(args.soak, args.soak_target, Target.chosen(args.python, args.sid_root),
             args.soak_rate, poll=max(1.0, args.soak / 240), csv_path=args.soak_csv, out=out)
        return
    PEER_PATHS["austin"] = args.austin or peers.find_peer("austin")
    PEER_PATHS["py-spy"] = args.py_spy or peers.find_peer("py-spy")
    plan = Plan(args)
    started = time.monotonic()
    out.write("## Recorder benchmark\n\nCommand: `%s`; %s; %s, %d CPUs, Linux %s; "
              "%d repeat(s), %.1f s of baseline work per run; load average at start %.2f.\n"
              % (command_line("bench.bench_record"), datetime.date.today().isoformat(),
                 platform.node(), os.cpu_count(), platform.release(), plan.repeats, plan.work,
                 os.getloadavg()[0]))
    out.write("spyrec at %s.\n" % spyrec_revision())
    out.flush()
    results = {"runs": [], "baselines": [], "skipped": []}
    if args.fine_slowdown:
        fine(args, plan, results, out)
    else:
        if not args.breakdown_only:
            compare(args, plan, random.Random(args.seed), results, out)
        if not args.no_breakdown:
            results["breakdown"] = breakdown(args, out)
    out.write("\nTotal bench time: %.1f min; load average at the end %.2f.\n"
              % ((time.monotonic() - started) / 60, os.getloadavg()[0]))
    if args.json:
        write_json(args.json, results)


def write_json(path, results):
    """The raw figures of every run (--json), for --report to print again."""
    if "fine" in results:
        saved = results
    else:
        saved = {"runs": [r.as_dict() for r in results["runs"]],
                 "baselines": results["baselines"], "skipped": results["skipped"],
                 "breakdown": results.get("breakdown")}
    with open(path, "w") as f:
        json.dump(saved, f, indent=1, default=str)


if __name__ == "__main__":
    main()
