"""spyrec -- COMMAND where COMMAND starts Python later: a shell script, sh -c ... exec, env.

Each test launches a real wrapper around a real target, which prints its own PID and threads
(its ready line reaches spyrec's standard output, which the command inherits), and checks that
the recording is of that process, what spyrec says of the command's end, and that nothing the
command started is left running.
"""

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from pythons import exited, marked_lines, target_path
from test_record import Stacks, load, spyrec

PYTHON = sys.executable


def ready_lines(stdout):
    """The targets' ready lines (one per Python the command ran), in order."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def wrapper(tmp_path, body):
    script = tmp_path / "wrapper.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def spinner_leaf(stacks, truth):
    return stacks.most_common(truth["threads"]["spinner"]["native_id"])[0]


def test_a_script_that_runs_two_pythons_as_children_gets_the_first_recorded(tmp_path):
    # GIVEN a shell script that runs a Python program as a child (no exec), then another one,
    # then exits with a status of its own
    target = target_path("one_busy.py")
    script = wrapper(tmp_path, 'sleep 0.3\n"%s" -u "%s" 1.5 2\n"%s" -u "%s" 0.5 1\nexit 3\n'
                     % (PYTHON, target, PYTHON, target))
    out = tmp_path / "run.spy"
    # WHEN spyrec launches the script
    result = spyrec("-o", out, "-r", "200", "--", script)
    # THEN it records the first Python, waits for the script to end, and says how it ended
    assert result.returncode == 0, result.stderr
    first, second = ready_lines(result.stdout)
    assert "target exited; command exited with status 3;" in result.stderr, result.stderr
    stacks = Stacks(load(out))
    rec = stacks.rec
    assert rec.header["pid"] == first["pid"] != second["pid"]
    assert set(rec.samples["pid"].tolist()) == {first["pid"]}
    assert rec.header["mode"] == "launch" and rec.trailer["stop_reason"] == "target exited"
    # the recorded process is not spyrec's child: its exit code is not known, so not written
    assert "exit_code" not in rec.processes[first["pid"]]
    marks = marked_lines(target)
    assert spinner_leaf(stacks, first)[1:] == ("one_busy.py", marks["one-spin"])
    assert rec.trailer["samples"] >= 100
    assert exited(first["pid"]) and exited(second["pid"])


@pytest.mark.parametrize("how", ["sh -c exec", "env"])
def test_a_command_that_becomes_python_by_exec_is_recorded_as_itself(tmp_path, how):
    # GIVEN a command that replaces itself with Python: a shell that execs it after a while,
    # or env
    target = target_path("one_busy.py")
    if how == "env":
        command = ["env", "SPYREC_TEST=1", PYTHON, "-u", target, "1.5", "2"]
    else:
        command = ["sh", "-c", 'sleep 0.3; exec "$0" -u "$1" 1.5 2', PYTHON, target]
    out = tmp_path / "run.spy"
    # WHEN spyrec launches it
    result = spyrec("-o", out, "-r", "200", "--", *command)
    # THEN the process it started is the one recorded, with its exit code
    assert result.returncode == 0, result.stderr
    (truth,) = ready_lines(result.stdout)
    stacks = Stacks(load(out))
    rec = stacks.rec
    assert rec.header["pid"] == truth["pid"]
    assert rec.processes[truth["pid"]]["exit_code"] == 0
    assert "command exited with status 0" in result.stderr
    assert spinner_leaf(stacks, truth)[1:] == ("one_busy.py", marked_lines(target)["one-spin"])


@pytest.mark.parametrize("stop", ["duration", "SIGINT"])
def test_a_wrapper_stopped_by_spyrec_leaves_nothing_running(tmp_path, stop):
    # GIVEN a script whose Python child would run for a minute, and a background sleep
    pids = tmp_path / "pids"
    script = wrapper(tmp_path, 'sleep 60 &\necho $$ $! > "%s"\n"%s" -u "%s" 60 2\necho after\n'
                     % (pids, PYTHON, target_path("one_busy.py")))
    out = tmp_path / "run.spy"
    command = [sys.executable, "-m", "spyrec", "-o", str(out), "-r", "200"]
    if stop == "duration":
        command += ["-d", "1"]
    recorder = subprocess.Popen(command + ["--", str(script)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        # WHEN spyrec stops recording (the duration passed, or it was interrupted)
        ready = recorder.stdout.readline()
        if stop == "SIGINT":
            time.sleep(1)
            recorder.send_signal(signal.SIGINT)
        rest, stderr = recorder.communicate(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    # THEN it recorded the Python child and stopped the whole tree: script, Python, sleep
    assert recorder.returncode == 0, stderr
    truth = json.loads(ready)
    assert load(out).header["pid"] == truth["pid"]
    assert "command was killed by SIGTERM" in stderr, stderr
    assert "after" not in rest
    shell, sleeper = (int(pid) for pid in pids.read_text().split())
    for pid in (shell, truth["pid"], sleeper):
        assert exited(pid), pid


def test_a_command_run_from_a_terminal_reads_it_and_gets_its_ctrl_c(tmp_path):
    # GIVEN spyrec started from a shell prompt: on a terminal, in its foreground group
    out = tmp_path / "run.spy"
    # (short sleeps: an interrupt that comes after the interpreter last looked and before a
    # long sleep begins would wait for its end)
    program = "import time\nprint('got', input())\nwhile True: time.sleep(0.05)"
    pid, terminal = pty.fork()
    if pid == 0:  # the child: spyrec, on the terminal
        try:
            os.execv(PYTHON, [PYTHON, "-m", "spyrec", "-o", str(out), "--", PYTHON, "-c",
                              program])
        finally:
            os._exit(127)
    try:
        # WHEN the command reads a line from the terminal, then Ctrl-C is typed
        seen = read_until(terminal, b"")
        os.write(terminal, b"hello\n")
        seen += read_until(terminal, b"got hello")
        os.write(terminal, b"\x03")
        seen += read_until(terminal, None)
        # (who held the terminal, should the interrupt not have ended the command)
        listing = subprocess.run(["ps", "-o", "pid,pgid,tpgid,stat,args", "-s", str(pid)],
                                 capture_output=True, text=True).stdout
    finally:
        status = end_session(pid, terminal)
    # THEN it read it (a background group reading the terminal is stopped by the kernel), and
    # the interrupt ended it, and with it the recording
    assert b"got hello" in seen, seen
    assert b"KeyboardInterrupt" in seen, (seen, listing)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert load(out).trailer["stop_reason"] == "target exited"


def end_session(pid, terminal):
    """Hang up the terminal (what still runs on it gets SIGHUP) and reap its first process,
    killed if it does not end: a test that failed half way must not hang.  Returns its status."""
    os.close(terminal)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def read_until(fd, marker, timeout=20.0):
    """What the terminal shows until ``marker`` (None: until it closes; b"": a moment)."""
    seen = b""
    deadline = time.monotonic() + (0.5 if marker == b"" else timeout)
    while time.monotonic() < deadline and not (marker and marker in seen):
        if select.select([fd], [], [], 0.05)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: every process on the terminal has closed it
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_ctrl_z_in_a_shell_stops_the_command_and_spyrec_and_fg_resumes_both(tmp_path):
    # GIVEN an interactive shell on a terminal, running spyrec on a command that reads it
    out = tmp_path / "run.spy"
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the shell
        try:
            os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"],
                      dict(os.environ, PS1="prompt$ "))
        finally:
            os._exit(127)
    try:
        read_until(terminal, b"prompt$ ")
        program = "print('got', input()); print('then', input())"
        os.write(terminal, ('"%s" -m spyrec -o "%s" -- "%s" -c "%s"\n'
                            % (PYTHON, out, PYTHON, program)).encode())
        os.write(terminal, b"one\n")
        assert b"got one" in read_until(terminal, b"got one")
        # WHEN Ctrl-Z is typed, THEN the shell gets its prompt back, both stopped
        os.write(terminal, b"\x1a")
        stopped = read_until(terminal, b"prompt$ ")
        assert b"Stopped" in stopped, stopped
        os.write(terminal, b"ps -o stat=,args= -t $(tty)\n")
        listing = read_until(terminal, b"prompt$ ")
        states = [line.split()[0] for line in listing.splitlines() if b"-c print(" in line
                  or b"-m spyrec" in line]
        assert len(states) == 2 and all(state.startswith(b"T") for state in states), listing
        # AND fg resumes both: the command reads the terminal again, the recording ends whole
        os.write(terminal, b"fg\n")
        # (the shell names the job it resumes: then the command has the terminal's input)
        resumed = read_until(terminal, b"-m spyrec")
        time.sleep(0.5)
        os.write(terminal, b"two\n")
        finished = resumed + read_until(terminal, b"prompt$ ")
        shown = finished.decode("utf-8", "replace")  # (a str message is shown whole)
        assert b"then two" in finished, shown
        assert b"target exited" in finished, shown
        os.write(terminal, b"exit\n")
        read_until(terminal, None)
    finally:
        end_session(pid, terminal)
    assert load(out).trailer["stop_reason"] == "target exited"
