"""Other profilers' files load into the same tables as a .spy recording (spyanalyze.peers).

The real part: a CPU-bound job on CPython 3.12 (tests/targets/phased.py with only its work
phase: query() takes 60% of its CPU, encode() the rest, in slices of random length) is recorded
by py-spy (raw and speedscope, ``--nonblocking``) and Austin (text and MOJO), each attached
together with spyrec to the same run for the same seconds.  The hot function's share in each
imported file agrees with spyrec's within 4 points, and the command line reads the files as it
reads a .spy.  The same run, because separate runs of the job differ by more than that: at
200 Hz two runs' shares of query() were up to 5 points apart, while samplers of one run at
500 Hz and more agree within about 2 (3.2 once, py-spy's file in a clean-clone run of the
suite).

py-spy is found beside this Python or on PATH (the test extra installs it), Austin there or in
/tmp/peers/bin (the test extra installs austin-dist); a missing peer skips its tests, saying so.

The crafted part: damaged or foreign files are one error line and exit 1, never a traceback.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import spyanalyze
from spyanalyze import views

from pythons import python_for
from test_analyze_support import PHASED, run_cli, spyrec_available

WORK = 10.0           # seconds of CPU the job runs for: more than the samplers' SECONDS
#: (4 s once gave py-spy's file 4.4 points under spyrec's recording of the phased job: the
#: samplers start a few tenths of a second apart)
SECONDS = 6
RATE = 500
HOT = "query"
HOT_SHARE = 0.6
#: How far (in share points) an imported file's hot share may be from spyrec's.
TOLERANCE = 0.04
#: The peers' files, recorded in two runs (each beside spyrec) so that no more than three
#: samplers share the machine's spare core: a sampler left waiting for a CPU takes its samples
#: late and bunched (py-spy then takes the ones it missed back to back), which adds noise.
ROUNDS = (("pyspy.txt", "austin.txt"), ("pyspy.json", "austin.mojo"))


def find_peer(name):
    """A peer's executable: beside this Python (a venv's bin, where pip puts py-spy and
    austin-dist's binaries), on PATH, or in /tmp/peers/bin."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", ""), "/tmp/peers/bin"])
    return shutil.which(name, path=path)


def sampler_commands(folder, pid, names):
    """{file name: command} for spyrec and each peer file of ``names`` whose profiler is
    installed, each attached to ``pid`` for SECONDS."""
    ours = "run-%s.spy" % names[0].split(".")[1]
    commands = {ours: [sys.executable, "-m", "spyrec", "-q", "-o", folder / ours, "-r", RATE, "-d", SECONDS,
                       "-p", pid]}
    py_spy, austin = find_peer("py-spy"), find_peer("austin")
    for name in names:
        if name.startswith("pyspy") and py_spy:
            fmt = "raw" if name.endswith(".txt") else "speedscope"
            commands[name] = [py_spy, "record", "--nonblocking", "-r", RATE, "-d", SECONDS, "-f", fmt,
                              "-o", folder / name, "-p", pid]
        elif name.startswith("austin") and austin:
            binary = ["-b"] if name.endswith(".mojo") else []
            commands[name] = [austin, "-i", "%dus" % (1_000_000 // RATE), "-x", SECONDS, *binary,
                              "-o", folder / name, "-p", pid]
    return ours, commands


def record_round(folder, names):
    """Run the job and record it with spyrec and the peers of ``names`` at once: {name: path},
    with "ours" the spyrec recording."""
    target = subprocess.Popen([python_for("3.12"), str(PHASED), "0", str(WORK)], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)                         # started and in its work phase
        ours, commands = sampler_commands(folder, target.pid, names)
        running = {name: subprocess.Popen([str(part) for part in command], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE)
                   for name, command in commands.items()}
        for name, sampler in running.items():
            _out, err = sampler.communicate(timeout=120)
            assert sampler.returncode == 0 and (folder / name).stat().st_size, (name, err[-800:])
        assert target.poll() is None, "the job ended before the samplers did"
    finally:
        target.kill()
        target.wait()
    files = {name: folder / name for name in running if name != ours}
    files["ours"] = folder / ours
    return files


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """{peer file name: (its path, the path of spyrec's recording of the same run)}."""
    if not spyrec_available():
        pytest.skip("the spyrec recorder CLI is not available")
    folder = tmp_path_factory.mktemp("peers")
    result = {}
    for names in ROUNDS:
        files = record_round(folder, names)
        ours = files.pop("ours")
        result.update({name: (path, ours) for name, path in files.items()})
        result.setdefault("run.spy", (ours, ours))
    return result


def peer_file(recorded, name):
    """(path, spyrec's path) of a peer file; skips, saying why, when its profiler is missing."""
    if name not in recorded:
        peer = "py-spy" if name.startswith("pyspy") else "Austin"
        pytest.skip("%s is not installed (the test extra installs it; looked beside this Python, on "
                    "PATH and in /tmp/peers/bin)" % peer)
    return recorded[name]


def hot_share(path):
    """The hot function's total share of the samples, idle samples left out (as top does)."""
    recording = spyanalyze.load(path).filter(idle="exclude")
    table = views.aggregate(recording, "function", "samples").set_index("qualname")
    return float(table.loc[HOT, "total_share"])


def test_spyrec_sees_the_job_as_designed(recorded):
    assert hot_share(recorded["run.spy"][0]) == pytest.approx(HOT_SHARE, abs=TOLERANCE)


@pytest.mark.parametrize("name", ["pyspy.txt", "pyspy.json", "austin.txt", "austin.mojo"])
def test_imported_shares_agree_with_spyrec(recorded, name):
    path, ours = peer_file(recorded, name)
    assert hot_share(path) == pytest.approx(hot_share(ours), abs=TOLERANCE)


@pytest.mark.parametrize("name", ["austin.txt", "austin.mojo"])
def test_austin_samples_keep_their_process_thread_files_and_clock(recorded, name):
    path, ours = peer_file(recorded, name)
    recording = spyanalyze.load(path)
    assert recording.header["austin_mode"] == "wall" and recording.interval_ns == 1_000_000_000 // RATE
    assert recording.duration == pytest.approx(SECONDS, rel=0.2)
    pid = spyanalyze.load(ours).header["pid"]
    assert recording.header["pid"] == pid
    assert set(recording.samples["pid"]) == set(recording.samples["tid"]) == {pid}
    assert str(PHASED) in set(recording.frames["file"])


def test_py_spy_speedscope_keeps_thread_and_clock(recorded):
    path, ours = peer_file(recorded, "pyspy.json")
    recording = spyanalyze.load(path)
    assert recording.samples["tid"].unique().tolist() == [spyanalyze.load(ours).header["pid"]]
    assert recording.duration == pytest.approx(SECONDS, rel=0.2)
    assert str(PHASED) in set(recording.frames["file"])


@pytest.mark.parametrize("name", ["pyspy.txt", "pyspy.json", "austin.txt", "austin.mojo"])
def test_the_command_line_reads_peer_files(recorded, name):
    path, ours = peer_file(recorded, name)
    top = run_cli("top", path)
    assert top.returncode == 0 and HOT in top.stdout.decode(), top.stderr
    info = run_cli("info", path)
    assert info.returncode == 0 and "imported  from " in info.stdout.decode(), info.stderr
    compared = run_cli("diff", path, ours)
    assert compared.returncode == 0 and HOT in compared.stdout.decode(), compared.stderr


def test_info_says_what_collapsed_stacks_lack(recorded):
    info = run_cli("info", peer_file(recorded, "pyspy.txt")[0]).stdout.decode()
    assert "from py-spy collapsed output: no timestamps, CPU time, memory or thread states" in info


# ------------------------------------------------------------------------------------------
# Crafted files


def varint(n, sign=False):
    """A MOJO integer (P403n1x87/austin, src/mojo.h, ``mojo_integer``)."""
    out = bytearray([(n & 0x3F) | (0x40 if sign else 0) | (0x80 if n >> 6 else 0)])
    n >>= 6
    while n:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
    return bytes(out)


def mojo(samples):
    """A MOJO 3 file of wall-mode samples, each (tid, [(file, scope, line)...], µs)."""
    data = bytearray(b"MOJ" + varint(3))
    for key, value in (("austin", "3.7.0"), ("interval", "5000"), ("mode", "wall")):
        data += b"\x01" + key.encode() + b"\0" + value.encode() + b"\0"
    strings, frames = {}, {}
    for tid, stack, micros in samples:
        refs = bytearray()
        for frame in stack:
            for text in frame[:2]:
                if text not in strings:
                    strings[text] = len(strings) + 1
                    data += b"\x0b" + varint(strings[text]) + text.encode() + b"\0"
            if frame not in frames:
                frames[frame] = len(frames) + 1
                data += (b"\x03" + varint(frames[frame]) + varint(strings[frame[0]])
                         + varint(strings[frame[1]]) + varint(frame[2]) + varint(frame[2]) + varint(0) * 2)
            refs += b"\x05" + varint(frames[frame])
        data += b"\x02" + varint(100) + varint(0) + b"%x\0" % tid + refs + b"\x09" + varint(micros)
    return bytes(data)


MAIN = ("/app/main.py", "main", 3)
WORK_FRAME = ("/app/main.py", "Job.work", 9)


def test_a_crafted_mojo_file_loads(tmp_path):
    path = tmp_path / "run.mojo"
    path.write_bytes(mojo([(100, [MAIN, WORK_FRAME], 5000), (101, [MAIN], 5000),
                           (100, [MAIN, WORK_FRAME], 5100), (101, [MAIN], 5100)]))
    recording = spyanalyze.load(path)
    assert len(recording) == 4 and recording.lost == ()
    assert recording.samples["t"].tolist() == [5000_000, 5000_000, 10100_000, 10100_000]
    leaves = recording.leaves()
    assert leaves["qualname"].tolist() == ["Job.work", "main", "Job.work", "main"]
    assert recording.frames.set_index("qualname").loc["Job.work", "name"] == "work"


def test_a_thread_id_too_large_for_a_tid_stands_for_a_thread_of_its_own(tmp_path):
    """Austin 3.7 now and then writes a thread id read from the memory of a thread that ended
    (0x3100000020 on a thread-per-request server): its samples load, under a thread of their own."""
    path = tmp_path / "run.mojo"
    path.write_bytes(mojo([(100, [MAIN, WORK_FRAME], 5000), (0x3100000020, [MAIN], 5000)]))
    text = tmp_path / "run.austin"
    text.write_text("# austin: 3.7.0\n# interval: 5000\n# mode: wall\n\n"
                    "P7;T0:100;/app/main.py:main:3;/app/main.py:Job.work:9 5000\n"
                    "P7;T0:%d;/app/main.py:main:3 5000\n" % 0x3100000020)
    for recording in map(spyanalyze.load, (path, text)):
        threads = recording.samples.groupby("thread", observed=True).size().to_dict()
        assert threads == {"tid 100": 1, "thread 210453397536": 1}, threads
        assert (recording.threads["tid"] > 4_000_000).sum() == 1    # not a kernel TID
    assert run_cli("top", path).returncode == 0


def test_a_mojo_file_cut_in_a_sample_keeps_the_samples_before_it(tmp_path):
    whole = mojo([(100, [MAIN, WORK_FRAME], 5000)] * 3)
    path = tmp_path / "cut.mojo"
    path.write_bytes(whole[:-3])
    recording = spyanalyze.load(path)
    assert len(recording) == 2 and "cut off" in recording.lost[0]
    result = run_cli("top", path)
    assert result.returncode == 0 and b"spyanalyze: warning: " in result.stderr
    assert_one_error_line(run_cli("--strict", "top", path), "lost data")


def assert_one_error_line(result, text):
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("spyanalyze: error: "), stderr
    assert text in stderr and "Traceback" not in stderr


@pytest.mark.untimed
@pytest.mark.parametrize("name, content, text", [
    ("cut.mojo", b"MOJ", "too short for a MOJO header"),
    ("new.mojo", b"MOJ" + varint(9), "MOJO version 9"),
    ("undefined.mojo", b"MOJ\x03\x02\x01\x00a\x00\x05\x07\x09\x01", "undefined frame"),
    ("long.mojo", b"MOJ\x03\x02" + b"\xff" * 20, "longer than 10 bytes"),
    ("huge.txt", b"main (app.py:1);work (app.py:2) 100000000000000\n", "past the reader's memory budget"),
    ("huger.txt", b"main (app.py:1) 3\nmain (app.py:1) 1%s\n" % (b"0" * 5000), "not a number"),
    ("garbage.bin", bytes(range(256)) * 4, "bad magic"),
    ("other.json", json.dumps({"traceEvents": []}).encode(), "bad magic"),
    ("evented.json", json.dumps({"$schema": "https://www.speedscope.app/file-format-schema.json",
                                 "shared": {"frames": [{"name": "f"}]},
                                 "profiles": [{"type": "evented", "events": []}]}).encode(),
     "not a sampled profile"),
    ("bad-frame.json", json.dumps({"$schema": "https://www.speedscope.app/file-format-schema.json",
                                   "shared": {"frames": [{"name": "f"}]},
                                   "profiles": [{"type": "sampled", "samples": [[0, 5]], "weights": [1],
                                                 "unit": "seconds"}]}).encode(), "refers to no frame"),
    ("austin.txt", b"# austin: 3.7.0\n# mode: wall\n\nP1;T0:1;/a.py:f:1 \x1b[2J\n", "not a number"),
    ("late.txt", b"main (app.py:1) 3\nmain (app.py:1) lots\n", "not a line of collapsed stacks"),
])
def test_malformed_peer_files_are_one_error_line(tmp_path, name, content, text):
    path = tmp_path / name
    path.write_bytes(content)
    assert_one_error_line(run_cli("top", path), text)


def test_collapsed_prefixes_give_processes_and_threads(tmp_path):
    path = tmp_path / "threads.txt"
    path.write_text('process 42:"python app.py";thread (43): MainThread;main (app.py:3);work (app.py:9) 5\n'
                    'process 42:"python app.py";thread (0x7F00AA001234);run (pool.py:20) 2\n'
                    ' 1\n')
    recording = spyanalyze.load(path)
    assert len(recording) == 8 and recording.header["pid"] == 42
    by_thread = recording.samples.groupby("thread", observed=True).size().to_dict()
    assert by_thread == {"MainThread": 5, "thread 0x7F00AA001234": 2, "tid 0": 1}
    assert recording.samples["wall"].tolist() == [1] * 8      # no times: a sample weighs a tick
    assert recording.leaves()["qualname"].tolist().count("<no Python frames>") == 1


def test_austin_full_mode_gives_idle_and_cpu(tmp_path):
    path = tmp_path / "full.txt"
    path.write_text("# austin: 3.7.0\n# interval: 5000\n# mode: full\n\n"
                    "P7;T0:7;/a.py:<module>:1;/a.py:spin:4 5000,0,0\n"
                    "P7;T0:8;/a.py:<module>:1;/a.py:wait:9 5000,1,0\n"
                    "P7;T0:7;/a.py:<module>:1;/a.py:spin:4;:INVALID: 5000,0,-32\n"
                    "P7;T0:8;/a.py:<module>:1;/a.py:wait:9 5000,1,0\n\n# duration: 20000\n"
                    "# errors: 1/4\n")
    recording = spyanalyze.load(path)
    samples = recording.samples
    assert samples["idle"].tolist() == [False, True, False, True]
    assert samples["torn"].tolist() == [False, False, True, False]
    assert samples["cpu_delta"].tolist() == [5000_000, 0, 5000_000, 0]
    assert recording.trailer == {"errors": 1, "samples": 4, "duration_ns": 20000_000}
