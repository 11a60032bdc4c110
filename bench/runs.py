"""One run of the gated target (bench/targets/gated.py) for the recorder benchmark, alone or
with a profiler attached: the method of bench_record.py's docstring, steps 1 to 4.
"""

import json
import os
import select
import signal
import statistics
import subprocess
import time

from bench.common import change, kill, log, task_cpu_ns

#: Leaves of the gated target's busy stacks: samples ending elsewhere are not its work.
BUSY_LEAVES = ("heavy", "light", "descend", "worker")


def calibrate(target, threads, seconds):
    """Work units that take ``seconds`` of baseline time (median of a few short runs)."""
    probe = 4000
    times = []
    for _ in range(3):
        _, proc = target.start(["--no-gate", "--work", str(probe), "--threads", str(threads)])
        out, _ = proc.communicate(timeout=120)
        times.append(json.loads(out.decode().strip().splitlines()[-1])["elapsed"])
    per_unit = statistics.median(times) / probe
    return max(threads, int(seconds / per_unit))


class Run:
    """The result of one target run, with or without a profiler."""

    def __init__(self, profiler, rate, threads):
        self.profiler = profiler.name if profiler else None
        self.rate = rate
        self.threads = threads
        self.elapsed = None
        self.truth_share = None
        self.error = None
        self.cpu_cores = None
        self.peak_rss = None
        self.bytes = None
        self.samples = None
        self.busy = None
        self.heavy = None
        self.light = None
        self.max_depth = None
        self.baseline = None
        self.cpu_time = None
        self.thread_seconds = None
        self.preempted = None
        self.baseline_cpu = None
        self.extra = {}

    @property
    def rate_per_thread(self):
        if self.busy is None or not self.elapsed:
            return None
        return self.busy / (self.thread_seconds or self.elapsed * self.threads)

    @property
    def measured_share(self):
        if not self.heavy and not self.light:
            return None
        return self.heavy / (self.heavy + self.light)

    @property
    def slowdown(self):
        if self.elapsed is None or not self.baseline:
            return None
        return change(self.elapsed, self.baseline)

    @property
    def cpu_slowdown(self):
        if self.cpu_time is None or not self.baseline_cpu:
            return None
        return change(self.cpu_time, self.baseline_cpu)

    def as_dict(self):
        d = {k: v for k, v in self.__dict__.items()}
        d.update(rate_per_thread=self.rate_per_thread, measured_share=self.measured_share,
                 slowdown=self.slowdown, cpu_slowdown=self.cpu_slowdown)
        return d


def wait_exit(pid, timeout):
    """Reap ``pid``; (status, rusage) or None if it is still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, status, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            return 0, None
        if got == pid:
            return status, usage
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


class Launched:
    """A profiler process, started through GNU time when it is installed.

    ``ru_maxrss`` from ``wait4`` is not the profiler's own peak: exec keeps the high-water
    mark of the address space it replaces, and before exec the child's is a copy of this bench
    process (tens of MB once it has parsed a few outputs).  GNU time forks from a process of
    about 2 MB, so the %M it reports is the profiler's own peak RSS.  ``pid`` is the process
    to wait for (time, or the profiler itself); ``real_pid`` is the profiler's.
    """

    def __init__(self, cmd, err, rss_path):
        self.rss_path = rss_path if TIME_BIN else None
        if TIME_BIN:
            cmd = [TIME_BIN, "-f", "%M", "-o", rss_path] + cmd
        self.popen = subprocess.Popen(cmd, stdout=err, stderr=err, stdin=subprocess.DEVNULL)
        self.pid = self.popen.pid
        self.real_pid = self._child() if TIME_BIN else self.pid
        self.returncode = None

    def _child(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as f:
                    children = f.read().split()
            except OSError:
                return self.pid
            if children:
                return int(children[0])
            time.sleep(0.002)
        return self.pid

    def poll(self):
        if self.returncode is None:
            self.returncode = self.popen.poll()
        return self.returncode

    def peak_rss(self, usage):
        """(bytes, exact?): GNU time's %M, else ru_maxrss (an upper bound, see above)."""
        if self.rss_path:
            try:
                with open(self.rss_path) as f:
                    lines = [line.strip() for line in f if line.strip()]
                return int(lines[-1]) * 1024, True
            except (OSError, ValueError, IndexError):
                pass
        return (usage.ru_maxrss * 1024 if usage is not None else None), False


def stop_profiler(prof):
    """The profiler is still running: SIGINT, then SIGKILL.  Returns (status, rusage).

    The signal goes to the profiler itself: GNU time ignores SIGINT while it waits."""
    for sig, grace in ((signal.SIGINT, 10), (signal.SIGKILL, 10)):
        for pid in {prof.real_pid, prof.pid} if sig == signal.SIGKILL else {prof.real_pid}:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        got = wait_exit(prof.pid, grace)
        if got is not None:
            return got
    return 0, None


def tail(path, lines=3):
    try:
        with open(path, "rb") as f:
            text = f.read()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""
    text = "".join(ch for ch in text if ch == "\n" or ch.isprintable())
    useful = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(useful[-lines:])[:300]


def measure(target, threads, units, profiler, rate, workdir, settle, timeout):
    """One run of the gated target, with ``profiler`` at ``rate`` (or none: a baseline)."""
    run = Run(profiler, rate, threads)
    ready, proc = target.start(["--work", str(units), "--threads", str(threads)])
    attached = None
    try:
        if profiler is not None:
            attached = Attached(profiler, ready["pid"], rate, threads, workdir)
            if not attached.settled(settle):
                run.error = "failed: exited %s before the work started: %s" % (
                    attached.prof.returncode, tail(attached.err_path))
                kill(proc)
                return run
        line = release(proc, attached, run, timeout)
        if not line:
            run.error = "failed: target timed out after %.0f s" % timeout
            if attached is not None:
                # A profiler that keeps the target ptrace-stopped (py-spy's blocking mode at high
                # rates) must go first: a SIGKILL to a tracee frozen mid-operation stays pending.
                for pid in (attached.prof.real_pid, attached.prof.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            proc.kill()
        else:
            take_result(run, json.loads(line))
        wait_target(proc, attached, run)
        if attached is not None:
            attached.reap(run)
            if run.error is None:
                attached.read_output(run)
        return run
    finally:
        if attached is not None and attached.prof.returncode is None:
            stop_profiler(attached.prof)
            attached.prof.returncode = attached.prof.popen.returncode = -1
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log("target %d would not exit; left behind" % proc.pid)


class Attached:
    """A profiler attached to the target of one run: its files, its process, its start."""

    def __init__(self, profiler, pid, rate, threads, workdir):
        self.profiler = profiler
        stem = "%s-%s-%dt" % (profiler.name.replace(" ", "").replace("-", ""), rate, threads)
        self.out = os.path.join(workdir, stem + profiler.ext)
        self.err_path = os.path.join(workdir, stem + ".stderr")
        for stale in (self.out, self.out + ".txt"):
            if os.path.exists(stale):
                os.unlink(stale)
        self.started = time.monotonic()
        with open(self.err_path, "wb") as err:
            self.prof = Launched(profiler.command(pid, rate, self.out), err,
                                 os.path.join(workdir, stem + ".rss"))
        self.cpu0 = None

    def settled(self, settle):
        """Wait until it is sampling, and ``settle`` seconds more; False if it exited."""
        deadline = time.monotonic() + 15
        while not self.profiler.is_ready(self.out, self.err_path, self.prof.real_pid) \
                and time.monotonic() < deadline:
            if self.prof.poll() is not None:
                break
            time.sleep(0.02)
        time.sleep(settle)
        if self.prof.poll() is not None:
            return False
        self.cpu0 = task_cpu_ns(self.prof.real_pid)
        return True

    def reap(self, run):
        """Wait for the profiler to exit (stopped after 60 s): its exit code, peak RSS, CPU."""
        prof = self.prof
        got = wait_exit(prof.pid, 60)
        if got is None:
            got = stop_profiler(prof)
            run.extra["stopped"] = True
        status, usage = got
        prof.returncode = os.waitstatus_to_exitcode(status) if usage is not None else 0
        prof.popen.returncode = prof.returncode      # reaped here: Popen must not wait again
        run.peak_rss, exact = prof.peak_rss(usage)
        if not exact:
            run.extra["peak_rss_upper_bound"] = True
        if usage is not None:
            # whole-life CPU (start-up and attach included) over whole-life wall time
            run.extra["cpu_life"] = (usage.ru_utime + usage.ru_stime) / (time.monotonic()
                                                                          - self.started)

    def read_output(self, run):
        """What the profiler wrote: its size and samples, or why it cannot be read."""
        try:
            run.bytes, parsed = self.profiler.finish(self.out)
        except Exception as exc:     # a peer's output we cannot read is its failure
            run.error = "failed: output unreadable (%s: %s); %s" % (
                type(exc).__name__, str(exc)[:120], tail(self.err_path))
            return
        run.samples = parsed.samples
        run.busy = parsed.busy(BUSY_LEAVES)
        run.heavy = parsed.leaves.get("heavy", 0)
        run.light = parsed.leaves.get("light", 0)
        run.max_depth = parsed.max_depth
        trailer = parsed.extra.get("trailer")
        if trailer:
            run.extra["trailer"] = trailer
        if not run.samples:
            run.error = "failed: no samples (exit %s): %s" % (self.prof.returncode,
                                                              tail(self.err_path))


def release(proc, attached, run, timeout):
    """Send "go" and wait for the target's result line (b"" after ``timeout``), reading the
    profiler's CPU every 50 ms: some profilers exit within microseconds of the target, before a
    read after the line could be made."""
    t0 = time.monotonic()
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    line = b""
    last = (t0, attached.cpu0) if attached is not None else None
    while time.monotonic() - t0 < timeout:
        ready_fds, _, _ = select.select([proc.stdout], [], [], 0.05)
        if attached is not None:
            last = cpu_reading(attached, last)
        if ready_fds:
            line = proc.stdout.readline()
            break
    if attached is not None:
        last = cpu_reading(attached, last)
        if attached.cpu0 is not None and last[1] is not None and last[0] > t0:
            run.cpu_cores = (last[1] - attached.cpu0) / 1e9 / (last[0] - t0)
    return line


def cpu_reading(attached, last):
    """(now, the profiler's CPU ns), or ``last`` once it is gone."""
    cpu = task_cpu_ns(attached.prof.real_pid)
    return (time.monotonic(), cpu) if cpu is not None else last


def take_result(run, result):
    """The target's own figures from its result line."""
    run.elapsed = result["elapsed"]
    run.cpu_time = result.get("cpu")
    run.thread_seconds = result.get("thread_seconds")
    run.preempted = result.get("preempted")
    run.truth_share = result["heavy_share"]


def wait_target(proc, attached, run):
    """Let the target exit; a target that will not (its profiler holding it) is killed."""
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        if attached is not None:
            stop_profiler(attached.prof)
        proc.kill()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            run.error = run.error or "failed: target would not exit"


def safe_measure(target, threads, units, profiler, rate, workdir, settle, timeout):
    """``measure``, with anything unexpected turned into a failed run instead of a crash."""
    try:
        return measure(target, threads, units, profiler, rate, workdir, settle, timeout)
    except Exception as exc:
        run = Run(profiler, rate, threads)
        run.error = "failed: %s: %s" % (type(exc).__name__, str(exc)[:160])
        return run

