"""Bad input to spyrec: one clear line on stderr, a non-zero exit, never a traceback."""

import os
import subprocess
import sys
import time

import pytest


def spyrec(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "spyrec", *args], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result, *fragments, code=None):
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spyrec: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def unused_pid():
    pid = 4_000_000
    while os.path.exists("/proc/%d" % pid):
        pid -= 1
    return pid


def test_a_pid_that_does_not_exist(tmp_path):
    pid = unused_pid()
    result = spyrec("-o", str(tmp_path / "x.spy"), "-p", str(pid))
    assert_one_line_error(result, str(pid))
    assert not (tmp_path / "x.spy").exists()


def test_a_process_that_is_not_python(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.1)
        result = spyrec("-o", str(tmp_path / "x.spy"), "-p", str(sleeper.pid))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert_one_line_error(result, "Python")


def test_an_unwritable_output(tmp_path):
    result = spyrec("-o", str(tmp_path / "missing-dir" / "x.spy"), "-p", str(os.getpid()))
    assert_one_line_error(result, "cannot write", "missing-dir")


def test_a_command_that_cannot_be_started(tmp_path):
    result = spyrec("-o", str(tmp_path / "x.spy"), "--", str(tmp_path / "no-such-program"))
    assert_one_line_error(result, "cannot start", "no-such-program")


def test_a_launched_command_that_is_not_python(tmp_path):
    result = spyrec("-o", str(tmp_path / "x.spy"), "--", "sleep", "20", timeout=60)
    assert_one_line_error(result, "Python")


@pytest.mark.parametrize("args, fragment", [
    (["--bogus"], "--bogus"),
    (["-o", "x.spy"], "-p PID"),
    (["-o", "x.spy", "-i", "10parsecs", "-p", "1"], "10parsecs"),
    (["-o", "x.spy", "-i", "1ms", "-r", "100", "-p", "1"], "not both"),
    (["-o", "x.spy", "-r", "0", "-p", "1"], "greater than zero"),
])
def test_bad_options(args, fragment):
    assert_one_line_error(spyrec(*args), fragment, code=2)
