"""Bad input to spyrec: one clear line on stderr, a non-zero exit, never a traceback."""

import os
import subprocess
import sys
import time

import pytest

from pythons import exited


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


#: The command line with 2 s, not 10, for a launched command to bring up Python: the timeout
#: is ``Launched.find_python``'s argument, which no option sets, and the test waits it out.
SPYREC_SHORT_LAUNCH_TIMEOUT = ("import runpy, spyrec.launcher as launcher; "
                               "launcher.Launched.find_python.__defaults__ = (2.0, False); "
                               "runpy.run_module('spyrec', run_name='__main__')")


def test_a_launched_command_that_is_not_python_is_stopped_whole(tmp_path):
    # GIVEN a command that never starts Python: a shell waiting for a child of its own
    pids = tmp_path / "pids"
    command = ["sh", "-c", 'sleep 60 & echo $$ $! > "$0"; wait', str(pids)]
    # WHEN spyrec launches it, THEN it gives up after its timeout, in one line
    result = subprocess.run([sys.executable, "-c", SPYREC_SHORT_LAUNCH_TIMEOUT, "-o",
                             str(tmp_path / "x.spy"), "--", *command],
                            capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, "no Python process appeared in sh within 2 s", "stopped")
    # AND nothing the command started runs on
    for pid in (int(pid) for pid in pids.read_text().split()):
        assert exited(pid), pid
    assert not (tmp_path / "x.spy").exists()


def test_a_launched_command_that_exits_before_any_python_says_how(tmp_path):
    result = spyrec("-o", str(tmp_path / "x.spy"), "--", "sh", "-c", "sleep 0.2; exit 4")
    assert_one_line_error(result, "sh exited with status 4 before any Python process appeared")


@pytest.mark.parametrize("args, fragment", [
    (["--bogus"], "--bogus"),
    (["-o", "x.spy"], "-p PID"),
    (["-o", "x.spy", "-i", "10parsecs", "-p", "1"], "10parsecs"),
    (["-o", "x.spy", "-i", "1ms", "-r", "100", "-p", "1"], "not both"),
    (["-o", "x.spy", "-r", "0", "-p", "1"], "greater than zero"),
])
def test_bad_options(args, fragment):
    assert_one_line_error(spyrec(*args), fragment, code=2)


def test_a_failed_start_leaves_an_existing_file_and_what_a_link_points_to_untouched(tmp_path):
    # GIVEN a recording already there, and a symlink to another file
    existing = tmp_path / "run.spy"
    existing.write_bytes(b"an earlier recording")
    pointed = tmp_path / "elsewhere.txt"
    pointed.write_bytes(b"not a recording")
    (tmp_path / "link.spy").symlink_to(pointed)
    # WHEN recording into them fails to start
    for name in ("run.spy", "link.spy"):
        assert_one_line_error(spyrec("-o", str(tmp_path / name), "-p", str(unused_pid())))
    # THEN both are as they were, and no temporary file is left behind
    assert existing.read_bytes() == b"an earlier recording"
    assert pointed.read_bytes() == b"not a recording"
    assert (tmp_path / "link.spy").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.txt", "link.spy", "run.spy"]


def test_a_recorder_killed_in_its_first_second_leaves_a_readable_file(tmp_path):
    # GIVEN a recording started on a sleeping Python program, over an earlier file
    out = tmp_path / "run.spy"
    out.write_bytes(b"an earlier recording")
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        recorder = subprocess.Popen([sys.executable, "-m", "spyrec", "-o", str(out), "-p",
                                     str(target.pid)], stderr=subprocess.PIPE)
        # WHEN it is killed before its first flush (one second), once the file has its name
        deadline = time.monotonic() + 10
        while out.read_bytes() == b"an earlier recording" and time.monotonic() < deadline:
            time.sleep(0.01)
        recorder.kill()
        recorder.wait()
    finally:
        target.kill()
        target.wait()
    # THEN the file holds the header: a recording of the target, said to be incomplete
    info = subprocess.run([sys.executable, "-m", "spyanalyze", "info", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert "time.sleep(30)" in info.stdout, info.stdout
    assert "the recorder was killed or the file was cut" in info.stdout, info.stdout


def test_a_failure_inside_the_sampling_loop_ends_the_recording_whole(tmp_path, monkeypatch):
    # GIVEN a real target, and a sampler whose 50th round fails with an unexpected error
    from spyrec import sampler as sampler_module
    from spyrec.recorder import record
    from spyformat import read_recording
    real_round = sampler_module.Sampler.sample_round
    rounds = []

    def failing_round(self, now):
        rounds.append(now)
        if len(rounds) == 50:
            raise KeyError(0x7f00dead)
        return real_round(self, now)

    monkeypatch.setattr(sampler_module.Sampler, "sample_round", failing_round)
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        out = tmp_path / "run.spy"
        # WHEN it records
        stats = record(str(out), pid=target.pid, interval_ns=1_000_000, duration_ns=5_000_000_000)
    finally:
        target.kill()
        target.wait()
    # THEN it stops there, with the reason in a trailer, and keeps the samples before
    assert stats.stop_reason.startswith("error: KeyError")
    with open(out, "rb") as f:
        recording = read_recording(f)
    assert recording.trailer["stop_reason"] == stats.stop_reason
    assert recording.sample_count == 49


def test_recording_as_a_library_leaves_the_calling_thread_as_it_was(tmp_path):
    # GIVEN this thread's timer slack, scheduling policy and scheduler slice
    import ctypes
    from spyrec.recorder import record
    from test_record import sched_fields
    libc = ctypes.CDLL(None, use_errno=True)  # prctl 30: PR_GET_TIMERSLACK

    def scheduling():
        return (libc.prctl(30, 0, 0, 0, 0), os.sched_getscheduler(0),
                sched_fields("thread-self").get("se.slice"))

    before = scheduling()
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        # WHEN record() runs on it
        record(str(tmp_path / "run.spy"), pid=target.pid, interval_ns=1_000_000,
               duration_ns=300_000_000)
    finally:
        target.kill()
        target.wait()
    # THEN they are what they were
    assert scheduling() == before


def test_a_zombie_is_said_to_have_exited(tmp_path):
    # GIVEN a child that exited and was not reaped yet
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % child.pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    try:
        # WHEN recorded THEN one line says so
        result = spyrec("-o", str(tmp_path / "x.spy"), "-p", str(child.pid))
        assert_one_line_error(result, "process %d has exited" % child.pid)
    finally:
        child.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="the hint for root is only given to root")
def test_root_refused_is_not_told_to_run_as_root(tmp_path):
    # GIVEN PID 1 (this machine's init): as root, refused or not Python
    result = spyrec("-o", str(tmp_path / "x.spy"), "-p", "1")
    # THEN one line, and no advice to do what is already done
    assert_one_line_error(result)
    assert "run as root" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_ends_the_recording_with_one_line_and_keeps_what_was_written(tmp_path):
    # GIVEN an output on a file system of 32 KiB (it holds 7,600-9,800 samples of this
    # recording, filled in about 3 s; 64 KiB took 9 s)
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(disk)], check=True)
    try:
        out = disk / "run.spy"
        # WHEN a busy program is recorded into it until it fills up
        result = spyrec("-o", str(out), "-r", "5000", "-d", "30", "--", sys.executable,
                        "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass",
                        timeout=60)
        # THEN one line says so, and the samples written before can be read
        assert_one_line_error(result, "No space left on device", "holds what was written before")
        info = subprocess.run([sys.executable, "-m", "spyanalyze", "info", str(out)],
                              capture_output=True, text=True, timeout=60)
        assert info.returncode == 0, info.stderr
        assert "incomplete" in info.stdout, info.stdout
        import spyanalyze
        assert len(spyanalyze.load(out).samples) > 1000
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_device_as_output_is_written_not_replaced(tmp_path):
    # GIVEN /dev/null as the output WHEN a recording fails to start, and one succeeds
    before = os.stat("/dev/null")
    assert_one_line_error(spyrec("-o", "/dev/null", "-p", str(unused_pid())))
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        assert spyrec("-o", "/dev/null", "-p", str(target.pid), "-d", "0.3").returncode == 0
    finally:
        target.kill()
        target.wait()
    # THEN it is still the device
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_rdev) == (before.st_mode, before.st_rdev)


def test_a_launched_program_ends_when_the_recorder_is_killed(tmp_path):
    # GIVEN spyrec running a program it started
    recorder = subprocess.Popen([sys.executable, "-m", "spyrec", "-o", str(tmp_path / "run.spy"),
                                 "--", sys.executable, "-c", "import time; time.sleep(60)"],
                                stderr=subprocess.PIPE)
    try:
        children = []
        deadline = time.monotonic() + 10
        while not children and time.monotonic() < deadline:
            time.sleep(0.05)
            with open("/proc/%d/task/%d/children" % (recorder.pid, recorder.pid)) as f:
                children = [int(pid) for pid in f.read().split()]
        assert children, "spyrec started no program"
        # WHEN spyrec is killed outright
        recorder.kill()
        recorder.wait()
        # THEN the program it started does not run on without it
        def gone():
            return not os.path.exists("/proc/%d" % children[0]) or open(
                "/proc/%d/stat" % children[0]).read().rsplit(")", 1)[1].split()[0] == "Z"

        deadline = time.monotonic() + 10
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone()
    finally:
        if recorder.poll() is None:
            recorder.kill()
