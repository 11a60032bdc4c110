"""What threads wait in, on every supported CPython (tests/targets/waits.py): ``spyrec where``
reads every thread once, with its state and wait cause; a recording keeps the wait cause of
every sample that found its thread asleep, and ``spyanalyze top --by cause`` sums them."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import spyanalyze
from spyanalyze.cli import main as spyanalyze_main
from pythons import EVERY_VERSION, SOME_VERSIONS, marked_lines, python_for, running_target, target_path

SPYREC = [sys.executable, "-m", "spyrec"]
#: What ``time.sleep`` waits in: clock_nanosleep from 3.11, select (or its pselect6 form)
#: before.
SLEEP_CALLS = {"clock_nanosleep", "nanosleep", "select", "pselect6"}


def where(*args):
    return subprocess.run(SPYREC + ["where"] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("label", EVERY_VERSION)
def test_every_thread_with_its_stack_state_and_wait(label):
    marks = marked_lines(target_path("waits.py"))
    with running_target(python_for(label), "waits.py", "30") as target:
        result = where("-p", target.pid, "--json", "--kernel")
        text = where("-p", target.pid)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    threads = {t["tid"]: t for t in report["threads"]}
    expected = dict(target.info["threads"], MainThread=target.info["main"])
    assert set(threads) == {t["native_id"] for t in expected.values()}
    leaves = {"sleeper": ("nap", "wait-sleep"), "locker": ("take", "wait-lock"),
              "reader": ("receive", "wait-recv"), "spinner": ("spin", "wait-spin"),
              "MainThread": ("main", "wait-main")}
    for name, record in expected.items():
        thread = threads[record["native_id"]]
        assert thread["name"] == name
        python_frames = [f for f in thread["frames"] if f["file"].endswith("waits.py")]
        function, mark = leaves[name]
        assert (python_frames[0]["name"], python_frames[0]["line"]) == (function, marks[mark])
    by_name = {t["name"]: t for t in report["threads"]}
    assert by_name["spinner"]["running"] and by_name["spinner"]["syscall"] is None
    assert by_name["spinner"]["cpu_ns"] > 0
    assert by_name["sleeper"]["syscall"] in SLEEP_CALLS
    assert by_name["locker"]["syscall"] == "futex"
    assert by_name["reader"]["syscall"] == "recvfrom"
    assert by_name["MainThread"]["syscall"] == "futex"
    for name in ("sleeper", "locker", "reader", "MainThread"):
        thread = by_name[name]
        assert not thread["running"] and thread["wchan"]
        assert any(symbol.startswith("__x64_sys_") or "sys_" in symbol
                   for symbol in thread["kernel"]), thread["kernel"]
    assert text.returncode == 0 and text.stdout.startswith("Process %d: " % target.pid)
    assert 'Thread %d "locker": waiting in futex' % expected["locker"]["native_id"] in text.stdout
    script = next(f["file"] for f in by_name["locker"]["frames"] if f["name"] == "take")
    assert "    take (%s:%d)" % (script, marks["wait-lock"]) in text.stdout


def test_a_pid_that_is_not_there_or_not_python_gets_one_line():
    gone = where("-p", 999999)
    assert gone.returncode != 0 and gone.stderr.strip() == "spyrec: error: no process with PID 999999"
    with subprocess.Popen(["sleep", "30"]) as sleep:
        try:
            not_python = where("-p", sleep.pid)
        finally:
            sleep.kill()
    assert not_python.returncode != 0
    assert not_python.stderr.startswith("spyrec: error: ")
    assert len(not_python.stderr.strip().splitlines()) == 1 and "Traceback" not in not_python.stderr
    usage = where()
    assert usage.returncode == 2 and "(see spyrec where --help)" in usage.stderr


@pytest.mark.parametrize("label", SOME_VERSIONS)
def test_a_recording_says_what_each_sleeping_thread_waited_in(label, tmp_path):
    out = tmp_path / "waits.spy"
    with running_target(python_for(label), "waits.py", "30") as target:
        result = subprocess.run(SPYREC + ["-q", "-o", str(out), "-p", str(target.pid), "-d", "1",
                                          "-r", "200"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rec = spyanalyze.load(out)
    samples = rec.samples
    expected = dict(target.info["threads"], MainThread=target.info["main"])
    calls = {"locker": {"futex"}, "reader": {"recvfrom"}, "sleeper": SLEEP_CALLS,
             "MainThread": {"futex"}}
    for name, allowed in calls.items():
        mine = samples[samples["tid"] == expected[name]["native_id"]]
        assert len(mine) > 100 and mine["idle"].all(), name
        assert set(mine["syscall"].astype(str)) <= allowed, (name, mine["syscall"].value_counts())
        assert mine["wchan"].notna().all(), name
    spinner = samples[samples["tid"] == expected["spinner"]["native_id"]]
    running = spinner[~spinner["idle"]]
    assert len(running) > 0.8 * len(spinner) and running["syscall"].isna().all()
    causes = rec.filter(idle="only").by_cause().set_index("syscall")
    assert causes.loc["futex", "share"] == pytest.approx(0.5, abs=0.1)   # two threads of four
    top = CliRunner().invoke(spyanalyze_main, ["top", str(out), "--idle", "only", "--by", "cause"])
    assert top.exit_code == 0, top.output
    assert "waiting in" in top.output and "futex (" in top.output and "recvfrom (" in top.output
