"""Per-thread state and CPU time read from /proc, against a real target's threads."""

import contextlib
import os
import sys
import time

from pythons import running_target
from spyrec import procstats
from spyrec.procstats import WCHAN_CHECK_EVERY, WCHAN_MAX_MISSES, ProcessStats, ThreadStats


def _share_running(stats, reads=400):
    """Spread over 0.1 s or more: a spinner that shares the GIL waits for it up to 5 ms at a time."""
    running = 0
    for _ in range(reads):
        running += stats.is_running()
        time.sleep(0.00025)
    return running / reads


def test_sleeping_and_spinning_threads():
    # GIVEN a target with a thread asleep in time.sleep and one spinning in pure Python
    with running_target(sys.executable, "stacks.py", "30") as target:
        threads = target.info["threads"]
        sleeper = ThreadStats("/proc", target.pid, threads["sleeper"]["native_id"])
        spinner = ThreadStats("/proc", target.pid, threads["spinner"]["native_id"])
        try:
            # WHEN their state and CPU time are read over and over
            sleeping = _share_running(sleeper)
            spinning = _share_running(spinner)
            spinner.cpu_delta_ns()
            sleeper.cpu_delta_ns()
            time.sleep(0.1)  # the kernel adds to a running thread's total at ticks (<= 10 ms)
            cpu = spinner.cpu_delta_ns()
            # THEN the sleeper is never running and the spinner mostly is (it shares the GIL
            # with the other busy threads), and only the spinner's CPU time grows
            assert sleeping == 0
            assert spinning > 0.2
            assert cpu > 0 and sleeper.cpu_delta_ns() == 0
        finally:
            sleeper.close()
            spinner.close()


@contextlib.contextmanager
def _sleeper_whose_wchan_says_running():
    """A sleeping thread's stats, its wchan answer replaced by a running thread's ("0"), as a
    kernel that will not tell wait channels answers for every thread."""
    with running_target(sys.executable, "stacks.py", "30") as target:
        threads = target.info["threads"]
        sleeper = ThreadStats("/proc", target.pid, threads["sleeper"]["native_id"])
        wchan = "/proc/%d/task/%d/wchan" % (target.pid, threads["spinner"]["native_id"])
        os.close(sleeper._wchan)
        sleeper._wchan = os.open(wchan, os.O_RDONLY)
        try:
            while os.pread(sleeper._wchan, 64, 0) != b"0":  # the spinner may wait for the GIL
                pass
            yield sleeper
        finally:
            sleeper.close()


def test_a_wchan_that_says_running_for_a_sleeper_is_dropped_for_stat(monkeypatch):
    # GIVEN a sleeper that never becomes dormant (a dormant thread's state is not read at all)
    monkeypatch.setattr(procstats, "DORMANT_AFTER", 1 << 30)
    with _sleeper_whose_wchan_says_running() as sleeper:
        # WHEN its state is read round after round (the spinner whose wchan it reads says "0"
        # only while it is not waiting for the GIL, which it may for several switch intervals
        # on a busy machine: reads spread over up to 10 s)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sleeper.refresh()
            time.sleep(0.0002)
            # THEN stat, which confirms every "0", has the last word: not running
            assert not sleeper.running and sleeper.cpu == -1
            if sleeper._wchan is None:
                break
        # AND wchan is dropped for stat after a few disagreements
        assert sleeper._wchan is None
        assert not any(sleeper.is_running() for _ in range(100))


def test_without_the_cpu_wchan_is_trusted_but_checked_now_and_then():
    # GIVEN the same sleeper, read by a sampler that does not need the thread's CPU (its
    # rounds ran back to back)
    with _sleeper_whose_wchan_says_running() as sleeper:
        # WHEN the state is read until the periodic checks with stat have dropped wchan
        answers = []
        while sleeper._wchan is not None and len(answers) < 200_000:
            answers.append(sleeper.is_running(need_cpu=False))
        # THEN every "0" answer but each 64th was taken as it came (running, CPU unknown),
        # each 64th was checked with stat and found wrong, and after enough of those stat has
        # the last word
        assert sleeper._wchan is None
        assert answers.count(True) >= WCHAN_MAX_MISSES * (WCHAN_CHECK_EVERY - 1)
        assert not any(sleeper.is_running(need_cpu=False) for _ in range(100))


def test_process_rss():
    with running_target(sys.executable, "stacks.py", "30") as target:
        stats = ProcessStats("/proc", target.pid)
        try:
            with open("/proc/%d/status" % target.pid) as f:
                vmrss = [int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")][0]
            assert abs(stats.rss_bytes() - vmrss) < 4 << 20
        finally:
            stats.close()
