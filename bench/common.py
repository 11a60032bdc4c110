"""What several benchmarks need, said once: where things are, which interpreter a ``--python``
option names, a few statistics, readers of /proc, and starting and stopping targets.

Interpreters are found by the tests' own discovery (tests/pythons.py), so a label such as
``3.12`` means the same interpreter to a benchmark as to the test that it backs up.
"""

import json
import math
import os
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import time

import pytest

from tests import pythons

# --------------------------------------------------------------------------------------------
# Paths

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
#: bench/targets: the programs the recorder benchmarks measure.
GATED = os.path.join(BENCH, "targets", "gated.py")
VARIED = os.path.join(BENCH, "targets", "varied.py")
DEEP = os.path.join(BENCH, "targets", "deep.py")
MAPPER = os.path.join(BENCH, "targets", "mapper.py")
BLACK_TIMED = os.path.join(BENCH, "targets", "black_timed.py")
TIMED_RUN = os.path.join(BENCH, "targets", "timed_run.py")
NULL_WAKER_SOURCE = os.path.join(BENCH, "null_waker.c")
#: tests/targets: the targets the tests run, for benchmarks that measure what a test checks.
test_target = pythons.target_path


def log(message):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


def command_line(module):
    """How this run was started, for the "Command:" line of a report."""
    return " ".join([".venv/bin/python -m", module] + [shlex.quote(a) for a in sys.argv[1:]])


# --------------------------------------------------------------------------------------------
# Interpreters

#: The host Python a benchmark's target runs under unless ``--python`` says otherwise.
DEFAULT_PYTHON = "3.12"
#: ``--python sid``: python3.15 in the sid root, started as ``chroot ROOT python3.15``.
SID = "sid"
sid_root = pythons.sid_root


def python_help(what="the target's interpreter", default="this one", sid=False):
    """The help of a ``--python`` option: what it takes, and its default."""
    return "%s: a label of tests/pythons.py (3.12, 3.15...) or a path (default: %s%s)" % (
        what, default, "; 'sid': python3.15 in the sid root" if sid else "")


def interpreter(choice):
    """The interpreter a ``--python`` option names: a label of tests/pythons.py (``3.12``,
    ``3.15``), found as the tests find it, or a path (anything with a ``/``) taken as it is.
    Exits saying what was looked for when the label's interpreter is not there."""
    if os.sep in choice:
        return choice
    try:
        return pythons.python_for(choice)
    except pytest.skip.Exception as exc:   # the tests skip; a benchmark cannot go on
        raise SystemExit(str(exc)) from None


def installed(label):
    """Whether the label's interpreter is there, without exiting."""
    try:
        interpreter(label)
    except SystemExit:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Statistics

#: Two-sided 95% Student t quantiles by degrees of freedom (beyond 30: the normal 1.96).
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
        10: 2.23, 12: 2.18, 14: 2.14, 16: 2.12, 18: 2.10, 20: 2.09, 25: 2.06, 30: 2.04}


def t95(df):
    known = [d for d in _T95 if d <= df]
    return _T95[max(known)] if known else _T95[1]


def mean_ci(values):
    """(mean, half-width of its 95% confidence interval) of independent measurements."""
    n = len(values)
    mean = statistics.mean(values)
    if n < 2:
        return mean, float("inf")
    return mean, t95(n - 1) * statistics.stdev(values) / math.sqrt(n)


def median_of(values):
    """The median of the values that are not None, or None when there are none."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def quantile(sorted_values, q):
    """The value at share ``q`` of an already sorted list (no interpolation)."""
    return sorted_values[int(q * (len(sorted_values) - 1))]


def change(value, base):
    """``value`` relative to ``base``, minus one: 0.05 is five percent more."""
    return value / base - 1.0


# --------------------------------------------------------------------------------------------
# /proc


def task_ids(pid):
    """The thread ids of ``pid``; empty once it is gone."""
    try:
        return {int(tid) for tid in os.listdir("/proc/%d/task" % pid)}
    except OSError:
        return set()


def task_cpu_ns(pid):
    """CPU time of every live thread of ``pid`` (ns, from schedstat), or None if it is gone."""
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    total = 0
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid), "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def vm_rss_bytes(pid):
    """The resident set of ``pid`` (VmRSS), or None if it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def target_threads(pid):
    """spyrec's ThreadStats of every thread of ``pid``."""
    from spyrec.procstats import ThreadStats
    return [ThreadStats("/proc", pid, tid) for tid in sorted(task_ids(pid))]


def target_cpus(threads):
    """The CPUs that the target's runnable threads are on or queued for (from their stat)."""
    return {t.cpu for t in threads if t.is_running(probe_first=False)}


def alive(pid):
    """The process runs (a zombie its parent has not reaped yet does not)."""
    try:
        return not pythons.exited(pid)
    except IndexError:
        return False


# --------------------------------------------------------------------------------------------
# Processes


def kill(proc):
    """Kill a process this benchmark started and reap it."""
    proc.kill()
    proc.wait()


def read_line(proc, timeout):
    """One line of a process's stdout, or b"" after ``timeout`` seconds / at its exit."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return b""
    return proc.stdout.readline()


def build_null_waker(workdir):
    """Compile bench/null_waker.c into ``workdir`` and return its path, or exit saying why."""
    binary = os.path.join(workdir, "null_waker")
    try:
        subprocess.run(["cc", "-O2", "-o", binary, NULL_WAKER_SOURCE], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("null-c needs a C compiler (cc): %s" % e)
    return binary


#: Where the bench targets are copied to inside a root (as seen from inside it).
ROOT_WORKDIR = "/tmp/spybench"


class Target:
    """How to start a bench/targets script (gated.py by default): with a host Python, or with
    a Python inside a root directory (``chroot ROOT PYTHON``), like a process in a container."""

    def __init__(self, python=None, root=None):
        self.python = python if python is not None else "python3.15"
        self.root = root
        self.version = None

    @classmethod
    def chosen(cls, choice, root_for_sid):
        """The target a ``--python`` option names (``sid``: python3.15 in ``root_for_sid``; a
        label of a Python in a root, such as ``3.15``: that one), prepared."""
        if choice == SID:
            target = cls(root=root_for_sid)
        else:
            python = interpreter(choice)
            target = cls(str(python), python.root) if isinstance(python, pythons.RootedPython) \
                else cls(python)
        target.prepare()
        return target

    @property
    def label(self):
        return "CPython %s%s" % (self.version or "?", " (sid root)" if self.root else "")

    def argv(self, script, args):
        if self.root:
            return ["chroot", self.root, self.python,
                    ROOT_WORKDIR + "/" + os.path.basename(script)] + args
        return [self.python, script] + args

    def prepare(self):
        """Copy the targets into the root, if any, and learn the Python's version."""
        if self.root:
            inside = os.path.join(self.root, ROOT_WORKDIR.lstrip("/"))
            os.makedirs(inside, exist_ok=True)
            for script in (GATED, VARIED):
                shutil.copy(script, inside)
        ready, proc = self.start(["--no-gate", "--work", "10"])
        proc.communicate(timeout=60)
        self.version = ready.get("python")

    def start(self, args, script=GATED):
        """Start ``script`` and wait for its ready line: (that line's JSON, the process)."""
        proc = subprocess.Popen(self.argv(script, args), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = read_line(proc, 60)
        if not line:
            kill(proc)
            raise RuntimeError("target %s did not start" % " ".join(self.argv(script, args)))
        return json.loads(line), proc


#: A recorder's CPU is measured from this long after it starts to this long before its end.
RECORDER_SETTLE_S, RECORDER_TAIL_S = 1.5, 0.5


def record_and_measure(target_args, options, rate, seconds, workdir):
    """Start the target (``target_args``: a command whose first line of output is JSON with its
    ``pid``), record it with spyrec attached by PID (``options``: more spyrec options) and
    return (its CPU in cores over the middle of the recording, ``spyanalyze info --json`` of
    the recording)."""
    target = subprocess.Popen(target_args, stdout=subprocess.PIPE, text=True)
    try:
        pid = json.loads(target.stdout.readline())["pid"]
        time.sleep(0.5)
        out = os.path.join(workdir, "run.spy")
        recorder = subprocess.Popen([sys.executable, "-m", "spyrec", "-q", "-o", out, "-p", str(pid),
                                     "-d", str(seconds), "-r", str(rate)] + list(options))
        time.sleep(RECORDER_SETTLE_S)
        first, start = task_cpu_ns(recorder.pid), time.monotonic()
        time.sleep(seconds - RECORDER_SETTLE_S - RECORDER_TAIL_S)
        cores = (task_cpu_ns(recorder.pid) - first) / 1e9 / (time.monotonic() - start)
        recorder.wait(timeout=60)
        info = subprocess.run([sys.executable, "-m", "spyanalyze", "info", out, "--json"],
                              capture_output=True, text=True, check=True)
        return cores, json.loads(info.stdout)
    finally:
        kill(target)
