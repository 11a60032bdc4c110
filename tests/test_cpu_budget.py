"""On a machine busy with other work the recorder keeps to a share of a CPU, losing rate instead
of taking the target's time (spyrec.cpubudget): the spacing of rounds from the kernel's run
queue, and a real recording next to spinning loops."""

import os
import subprocess
import sys

import pytest

from pythons import python_for, running_target
from spyformat import read_recording
from spyrec.cpubudget import BUSY_SHARE, DECIDE_EVERY_NS, LOADAVG, LOOK_EVERY_NS, CpuBudget

MS = 1_000_000


def _runnable(path, count):
    """A /proc/loadavg as the kernel writes it, ``count`` tasks runnable."""
    path.write_text("0.52 0.58 0.59 %d/467 12345\n" % count)


def _spend(budget, path, now, runnable, target_running, span=DECIDE_EVERY_NS):
    """Rounds of 1 ms of CPU every 1 ms for ``span`` ns with ``runnable`` tasks runnable;
    returns the time after them and the grid points the budget gave."""
    _runnable(path, runnable)
    given = []
    end = now + span
    while now < end:
        given.append(budget.next_round(now, MS, now + MS, MS, target_running) - now)
        now += LOOK_EVERY_NS
    return now, given


def test_rounds_are_spaced_only_while_other_work_fills_the_cpus(tmp_path):
    path = tmp_path / "loadavg"
    _runnable(path, 1)
    budget = CpuBudget.open(str(path), cpus=2)
    # GIVEN rounds of 1 ms of CPU every 1 ms, on 2 CPUs, with nothing else runnable: every
    # grid point is kept
    now, given = _spend(budget, path, 0, runnable=2, target_running=1)
    now, given = _spend(budget, path, now, runnable=2, target_running=1)
    assert set(given) == {MS} and not budget.busy
    # AND a target that fills the CPUs by itself does not make the machine busy
    now, given = _spend(budget, path, now, runnable=4, target_running=3)
    now, given = _spend(budget, path, now, runnable=4, target_running=3)
    assert set(given) == {MS} and not budget.busy
    # WHEN two tasks of other work keep the CPUs full
    now, given = _spend(budget, path, now, runnable=4, target_running=1)
    now, given = _spend(budget, path, now, runnable=4, target_running=1)
    # THEN the rounds are spaced so that the recorder keeps to its share of a CPU
    assert budget.busy and budget.skipped
    assert min(given[1:]) >= MS * (1 - BUSY_SHARE) / BUSY_SHARE
    # AND once the other work is gone, the grid comes back
    now, given = _spend(budget, path, now, runnable=2, target_running=1)
    now, given = _spend(budget, path, now, runnable=2, target_running=1)
    assert not budget.busy and set(given[1:]) == {MS}
    budget.close()


def test_no_run_queue_no_budget(tmp_path):
    assert CpuBudget.open(str(tmp_path / "absent")) is None
    (tmp_path / "garbled").write_text("nothing here\n")
    assert CpuBudget.open(str(tmp_path / "garbled")) is None


def _recorder_cpu(target, out, seconds):
    """(CPU seconds, stderr) of ``spyrec -p`` recording ``target`` at 1 kHz for ``seconds``."""
    recorder = subprocess.Popen(
        [sys.executable, "-m", "spyrec", "-o", str(out), "-r", "1000", "-d", "%gs" % seconds,
         "-p", str(target.pid)], stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(recorder.pid, 0)
    stderr = recorder.stderr.read()
    recorder.returncode = 0
    assert os.waitstatus_to_exitcode(status) == 0, stderr
    return usage.ru_utime + usage.ru_stime, stderr


@pytest.mark.skipif(not os.path.exists(LOADAVG), reason="no %s here" % LOADAVG)
def test_next_to_busy_loops_the_recorder_keeps_to_its_share(tmp_path):
    # GIVEN a machine whose CPUs are all busy with other work, and a target whose stacks are
    # deep and change every microsecond (costly rounds)
    loops = [subprocess.Popen(["sh", "-c", "while :; do :; done"])
             for _ in range(len(os.sched_getaffinity(0)))]
    try:
        with running_target(python_for("3.12"), "visitor.py", "30") as target:
            out = tmp_path / "busy.spy"
            # WHEN it is recorded at 1 kHz for 3 s, and for a tenth of a second (what starting
            # and stopping cost, there and then: a round or two hundred besides)
            cpu, stderr = _recorder_cpu(target, out, 3.0)
            start_and_stop, _ = _recorder_cpu(target, tmp_path / "short.spy", 0.1)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    # THEN it says it left rounds out, and its rounds took not much more than its share of a CPU
    assert "rounds left out while the machine was busy" in stderr, stderr
    assert (cpu - start_and_stop) / 2.9 < BUSY_SHARE + 0.1, (cpu, start_and_stop, stderr)
    # AND the recording it made is whole
    with open(out, "rb") as f:
        data = read_recording(f)
    assert data.sample_count > 50 and data.trailer["stop_reason"] == "duration"
