"""The sampling thread and the CPUs: it moves off a CPU that a target thread is queued for.

The tests place a real target's threads and the sampling thread (this test's own thread) on
chosen CPUs with ``sched_setaffinity``, run the sampler's real rounds, and check where the
sampling thread ends up.  They need two CPUs.
"""

import ctypes
import io
import os
import sys
import time

import pytest

from pythons import running_target
from spyrec.interpreter import PythonProcess
from spyrec.procstats import ThreadStats
from spyrec.sampler import Sampler
from spyrec.scheduling import STEP_ASIDE_ENV, StepAside
from spyformat import SpyWriter

CPUS = sorted(os.sched_getaffinity(0))
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs, this process may use %d"
                                    % len(CPUS))
sched_getcpu = ctypes.CDLL(None).sched_getcpu


def _pin_target(pid, cpu):
    for tid in os.listdir("/proc/%d/task" % pid):
        os.sched_setaffinity(int(tid), {cpu})


def _until_blocked(pid, tids, timeout=5.0):
    """Wait until each thread in ``tids`` sleeps (state S): the target's main thread runs on
    for a moment after its ready line, on its way to the call it blocks in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for tid in tids:
            with open("/proc/%d/task/%d/stat" % (pid, tid), "rb") as f:
                data = f.read()
            states.append(data[data.rfind(b")") + 2:][:1])
        if all(state == b"S" for state in states):
            return
        time.sleep(0.01)
    raise AssertionError("threads %s of %d did not block" % (tids, pid))


@pytest.fixture
def own_affinity():
    """Restores this thread's CPU affinity after a test that moves it."""
    before = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, before)


@needs_two_cpus
def test_a_busy_thread_reads_as_running_on_its_cpu():
    # GIVEN a target whose threads may only run on the second CPU, one of them spinning
    with running_target(sys.executable, "stacks.py", "30") as target:
        _pin_target(target.pid, CPUS[1])
        spinner = ThreadStats("/proc", target.pid, target.info["threads"]["spinner"]["native_id"])
        try:
            # WHEN its state is read until it is found runnable (it shares the GIL)
            deadline = time.monotonic() + 5
            while not spinner.is_running() and time.monotonic() < deadline:
                time.sleep(0.001)
            # THEN it is placed on that CPU
            assert spinner.cpu == CPUS[1]
            spinner.refresh()
            assert spinner.cpu == (CPUS[1] if spinner.running else -1)
        finally:
            spinner.close()


@needs_two_cpus
@pytest.mark.parametrize("target_cpu, moves", [(0, 1), (1, 0)])
def test_a_round_moves_off_the_cpu_a_target_thread_is_queued_for(own_affinity, target_cpu, moves):
    # GIVEN a target with CPU-bound threads, all of them allowed only on one CPU, and a sampler
    # that may use two CPUs
    with running_target(sys.executable, "stacks.py", "30") as target:
        _pin_target(target.pid, CPUS[target_cpu])
        with PythonProcess.attach(target.pid) as process:
            sampler = Sampler(process, SpyWriter(io.BytesIO()), 1_000_000, time.monotonic_ns())
            sampler.step_aside = StepAside(CPUS[:2], enabled=True)
            sampler.sample_round(time.monotonic_ns())  # the first round finds the threads
            for _ in range(5):
                # WHEN a round runs while the sampling thread is on the first CPU (while it
                # runs there, a runnable target thread pinned there waits in its queue)
                os.sched_setaffinity(0, {CPUS[0]})
                sampler.sample_round(time.monotonic_ns())
                # THEN it has moved to the CPU with no target thread when it shared one (and may
                # use both CPUs again), and stayed where it was when it did not
                if moves:
                    assert sched_getcpu() == CPUS[1]
                    assert os.sched_getaffinity(0) == set(CPUS[:2])
                else:
                    assert sched_getcpu() == CPUS[0]
                    assert os.sched_getaffinity(0) == {CPUS[0]}
            assert sampler.step_aside.moves == 5 * moves
            # AND a round that did not follow a sleep (back to back) does not look for the
            # target's CPUs: it stays
            os.sched_setaffinity(0, {CPUS[0]})
            sampler.woke = False
            sampler.sample_round(time.monotonic_ns())
            assert sched_getcpu() == CPUS[0]
            assert sampler.step_aside.moves == 5 * moves
            sampler.finish()


@needs_two_cpus
def test_a_round_moves_once_it_has_read_the_threads_that_were_running(own_affinity, monkeypatch):
    # GIVEN a target with one CPU-bound thread (the only one that ever asks for the GIL) and
    # seven blocked ones, all allowed only on the first CPU, and a sampler that found them in a
    # first round
    with running_target(sys.executable, "one_busy.py", "30") as target:
        _pin_target(target.pid, CPUS[0])
        blocked = [target.info["main"]["native_id"]] + [
            record["native_id"] for name, record in target.info["threads"].items()
            if name != "spinner"]
        _until_blocked(target.pid, blocked)
        with PythonProcess.attach(target.pid) as process:
            sampler = Sampler(process, SpyWriter(io.BytesIO()), 1_000_000, time.monotonic_ns())
            sampler.step_aside = StepAside(CPUS[:2], enabled=True)
            sampler.sample_round(time.monotonic_ns())
            threads = len(sampler._threads)
            reads = []
            real_refresh = ThreadStats.refresh

            def counted_refresh(stats, *args, **kwargs):
                reads.append(stats)
                return real_refresh(stats, *args, **kwargs)

            monkeypatch.setattr(ThreadStats, "refresh", counted_refresh)
            real_check = sampler.step_aside.check
            moved_after = []

            def noted_check(busy):
                moved = real_check(busy)
                if moved:
                    moved_after.append(len(reads))
                return moved

            sampler.step_aside.check = noted_check
            judged = 0
            for _ in range(20):
                running_before = sum(t.stats.running for t in sampler._threads.values())
                reads.clear()
                moved_after.clear()
                # WHEN a round runs on the first CPU, where the CPU-bound thread waits
                os.sched_setaffinity(0, {CPUS[0]})
                sampler.sample_round(time.monotonic_ns())
                if running_before != 1:
                    continue  # a blocked thread woke for a moment: not the case at hand
                # THEN the sampler left it as soon as it had read the thread found running at
                # the last round, before reading the blocked ones, and still read them all
                assert moved_after == [1]
                assert len(reads) == threads == 8
                assert sched_getcpu() == CPUS[1]
                judged += 1
                if judged == 5:
                    break
            assert judged == 5
            sampler.finish()


def test_nowhere_to_go_or_turned_off_means_no_move(monkeypatch):
    assert not StepAside([CPUS[0]]).enabled
    monkeypatch.setenv(STEP_ASIDE_ENV, "0")
    assert not StepAside(CPUS).enabled
    monkeypatch.delenv(STEP_ASIDE_ENV)
    assert StepAside(CPUS).enabled == (len(CPUS) > 1)
    # a CPU with a runnable target thread and no other CPU: stay
    aside = StepAside(CPUS[:2], enabled=True)
    assert not aside.check(set(CPUS[:2]))
    assert not aside.check(set())
    assert aside.moves == 0
