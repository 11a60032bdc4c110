"""On a busy machine the recorder keeps to a share of a CPU, losing rate instead of taking the
target's time (spyrec.cpubudget): the spacing of rounds from the kernel's CPU pressure, and a
real recording next to spinning loops."""

import os
import subprocess
import sys

import pytest

from pythons import python_for, running_target
from spyformat import read_recording
from spyrec.cpubudget import BUSY_SHARE, CHECK_EVERY_NS, PRESSURE_FILE, CpuBudget

MS = 1_000_000


def _pressure(path, stall_us):
    """A /proc/pressure/cpu as the kernel writes it, ``stall_us`` in its ``some`` total."""
    path.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=%d\n"
                    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n" % stall_us)


def test_rounds_are_spaced_only_while_tasks_wait_for_a_cpu(tmp_path):
    path = tmp_path / "cpu"
    _pressure(path, 0)
    budget = CpuBudget.open(str(path))
    # GIVEN rounds of 1 ms of CPU every 1 ms on an idle machine: every grid point is kept
    now = 0
    for _ in range(3):
        assert budget.next_round(now, MS, now + MS, MS) == now + MS
        now += CHECK_EVERY_NS
    # WHEN some task waited for a CPU half the time since the last look
    _pressure(path, 0.5 * CHECK_EVERY_NS / 1000)
    spaced = budget.next_round(now, MS, now + MS, MS)
    # THEN the next round comes late enough that the recorder keeps to its share
    assert budget.busy
    assert spaced - now >= MS * (1 - BUSY_SHARE) / BUSY_SHARE - MS
    assert (spaced - now) % MS == 0 and budget.skipped == (spaced - now) // MS - 1
    # AND once the pressure is gone, the grid comes back
    budget.next_round(now + CHECK_EVERY_NS, MS, now + CHECK_EVERY_NS + MS, MS)
    assert not budget.busy
    assert budget.next_round(now + CHECK_EVERY_NS, MS, now + CHECK_EVERY_NS + MS, MS) \
        == now + CHECK_EVERY_NS + MS
    budget.close()


def test_no_pressure_file_no_budget(tmp_path):
    assert CpuBudget.open(str(tmp_path / "absent")) is None
    (tmp_path / "garbled").write_text("nothing here\n")
    assert CpuBudget.open(str(tmp_path / "garbled")) is None


@pytest.mark.skipif(not os.path.exists(PRESSURE_FILE),
                    reason="this kernel gives no CPU pressure (%s)" % PRESSURE_FILE)
def test_next_to_busy_loops_the_recorder_keeps_to_its_share(tmp_path):
    # GIVEN a machine whose CPUs are all busy with other work, and a target whose stacks are
    # deep and change every microsecond (costly rounds)
    loops = [subprocess.Popen(["sh", "-c", "while :; do :; done"])
             for _ in range(len(os.sched_getaffinity(0)))]
    try:
        with running_target(python_for("3.12"), "visitor.py", "30") as target:
            out = tmp_path / "busy.spy"
            # WHEN it is recorded at 1 kHz for 3 s
            recorder = subprocess.Popen(
                [sys.executable, "-m", "spyrec", "-o", str(out), "-r", "1000", "-d", "3s",
                 "-p", str(target.pid)], stderr=subprocess.PIPE, text=True)
            _, status, usage = os.wait4(recorder.pid, 0)
            stderr = recorder.stderr.read()
            recorder.returncode = 0
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert os.waitstatus_to_exitcode(status) == 0, stderr
    # THEN it says it left rounds out, and took not much more than its share of a CPU
    assert "rounds left out while the machine was busy" in stderr, stderr
    cpu = usage.ru_utime + usage.ru_stime
    assert cpu / 3.0 < BUSY_SHARE + 0.15, (cpu, stderr)
    # AND the recording it made is whole
    with open(out, "rb") as f:
        data = read_recording(f)
    assert data.sample_count > 50 and data.trailer["stop_reason"] == "duration"
