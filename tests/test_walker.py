"""The walker against real targets under every supported interpreter (no mocks).

Each target prints its own ground truth (thread idents, native TIDs; see tests/targets/); lines
are resolved from ``# @mark`` comments in the target sources.  Because the target keeps running,
tests sample until the expected state shows up (``settled``) instead of assuming it.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import time
from collections import Counter

import pytest

from conftest import attached
from pythons import (ALL_SUPPORTED, ROOTED, UNSUPPORTED, marked_lines, minor_of, next_json_line,
                     python_for, running_target, target_path, wait_until)
from shares import sampling_margin
from test_record import Stacks, load, spyrec
from spyrec.errors import MemoryReadError, NotPython, TargetNotFound, UnsupportedPython
from spyrec.interpreter import FrameInfo, PythonProcess, ThreadStack

STACKS = target_path("stacks.py")
UNI = target_path("uni_\u540d\u524d_\U0001f600.py")
DEEP = target_path("deep.py")
MARKS = marked_lines(STACKS)
UNI_MARKS = marked_lines(UNI)
DEEP_MARKS = marked_lines(DEEP)
THREAD_BOTTOM = [("run", "Thread.run"), ("_bootstrap_inner", "Thread._bootstrap_inner"),
                 ("_bootstrap", "Thread._bootstrap")]


def has_qualname(label):
    return tuple(map(int, minor_of(label).split("."))) >= (3, 11)


def has_frame_chunks(label):
    """3.11+: frames live in the thread's datastack chunks, copied after its thread state."""
    return has_qualname(label)


def has_columns(label):
    return has_qualname(label)


def expected_stacks(label, target):
    """Thread name -> [(name, qualname, line, file)], innermost first (see stacks.py).

    Files are named as the target sees them (in a root: the staged copy of tests/targets).
    """
    q = has_qualname(label)
    info = target.info
    stacks_file = os.path.join(target.targets_dir, os.path.basename(STACKS))
    uni_file = os.path.join(target.targets_dir, os.path.basename(UNI))

    def frame(name, qualname, line, file=stacks_file):
        return (name, qualname if q else name, line, file)

    bottom = [(name, qualname if q else name, None, "threading.py")
              for name, qualname in THREAD_BOTTOM]
    recursion = info["recursion"]
    return {
        "MainThread": [frame("main_sleep", "main_sleep", MARKS["main-sleep"]),
                       frame("recurse", "recurse", MARKS["recurse-leaf"])]
        + [frame("recurse", "recurse", MARKS["recurse"])] * (recursion - 1)
        + [frame("main", "main", MARKS["main-call"]),
           frame("<module>", "<module>", MARKS["module-call"])],
        "sleeper": [frame("sleeper", "sleeper", MARKS["sleep"])] + bottom,
        "spinner": [frame("spin", "Outer.Inner.spin", MARKS["spin"]),
                    frame("spinner", "spinner", MARKS["spinner-call"])] + bottom,
        "generator": [frame("ticker", "ticker", MARKS["gen"]),
                      frame("consume", "consume", MARKS["consume"])] + bottom,
        "unicode": [frame("\u00e9moji_sleep", "\u00e9moji_sleep", UNI_MARKS["uni-sleep"], uni_file),
                    frame("\u95a2\u6570_level2", "\u95a2\u6570_level2", MARKS["kanji"]),
                    frame("caf\u00e9_level3", "caf\u00e9_level3", MARKS["cafe"])] + bottom,
        "lambda": [frame("<lambda>", "lambda_thread.<locals>.<lambda>", MARKS["lambda"]),
                   frame("lambda_thread", "lambda_thread", MARKS["lambda-call"])] + bottom,
        "far": [frame("far_away", "far_away", info["far_line"], info["far_file"]),
                frame("far_thread", "far_thread", MARKS["far-call"])] + bottom,
        "init": [frame("__init__", "Sleepy.__init__", MARKS["init-sleep"]),
                 frame("init_thread", "init_thread", MARKS["init-call"])] + bottom,
    }


def observed(proc, stack):
    """[(name, qualname, line, file)] of a ThreadStack, innermost first."""
    out = []
    for key, offset in stack.frames:
        info = proc.codes.describe(key, offset)
        out.append((info.name, info.qualname, info.line, info.filename))
    return out


def matches(got, want):
    if len(got) != len(want):
        return False
    for (name, qualname, line, file), (wname, wqual, wline, wfile) in zip(got, want):
        if (name, qualname) != (wname, wqual):
            return False
        if wline is None:  # threading.py internals: any real line in that file
            if line <= 0 or not file.endswith(wfile):
                return False
        elif (line, file) != (wline, wfile):
            return False
    return True


def threads_by_name(target):
    info = target.info
    by_ident = {info["main"]["ident"]: ("MainThread", info["main"])}
    for name, record in info["threads"].items():
        by_ident[record["ident"]] = (name, record)
    return by_ident


def settled(proc, target, label, timeout=10.0):
    """Sample until every thread shows its expected stack; return {name: (stack, frames)}."""
    want = expected_stacks(label, target)
    by_ident = threads_by_name(target)
    last = {}

    def attempt():
        result = {}
        for stack in proc.sample_threads():
            name = by_ident.get(stack.python_thread_id, ("?", None))[0]
            if name == "?":
                continue
            try:
                frames = observed(proc, stack)
            except MemoryReadError:
                return None
            last[name] = frames
            if not stack.torn and matches(frames, want[name]):
                result[name] = (stack, frames)
        return result if set(result) == set(want) else None

    result = wait_until(attempt, timeout)
    if not result:
        bad = {n: last.get(n) for n in want if not matches(last.get(n) or [], want[n])}
        pytest.fail("stacks never matched; last seen: %r" % bad)
    return result


def unstamped(stacks):
    """Stacks (one or a list) without the time each was read, nor whether it was read again:
    what two walks must agree on."""
    if isinstance(stacks, ThreadStack):
        return stacks._replace(read_ns=0, reread=False)
    return [stack._replace(read_ns=0, reread=False) for stack in stacks]


@pytest.fixture(scope="module", params=ALL_SUPPORTED)
def stacks_target(request):
    label = request.param
    with running_target(python_for(label), "stacks.py", "120") as target:
        with attached(target.pid) as proc:
            yield label, target, proc


# -- attach ------------------------------------------------------------------------------------


def test_attach_reports_the_interpreter(stacks_target):
    label, target, proc = stacks_target
    # GIVEN a running target WHEN attached THEN version, executable and runtime file are right
    assert proc.pid == target.pid
    assert proc.version_string == target.info["python"]
    assert proc.version == tuple(int(x) for x in target.info["python"].split("."))
    # paths as the target sees them (in a root: without the root's prefix)
    real = os.path.realpath(target.host_path(target.info["executable"]))
    assert proc.executable == (real[len(target.root):] if target.root != "/" else real)
    if label == "3.11-debian" or label in ROOTED:
        assert proc.runtime_file == "/usr/bin/python" + label.split("-")[0]
    else:
        assert os.path.basename(proc.runtime_file).startswith("libpython" + minor_of(label))


# -- stacks ------------------------------------------------------------------------------------


def test_every_thread_has_its_exact_stack(stacks_target):
    label, target, proc = stacks_target
    # WHEN sampled repeatedly THEN each thread shows exactly the frames and lines in stacks.py
    settled(proc, target, label)


def test_thread_identities_match_the_target(stacks_target):
    label, target, proc = stacks_target
    by_ident = threads_by_name(target)
    stacks = proc.sample_threads()
    # THEN one stack per thread, with the Python ident and the kernel TID the thread reported
    assert sorted(s.python_thread_id for s in stacks) == sorted(by_ident)
    for stack in stacks:
        name, record = by_ident[stack.python_thread_id]
        assert stack.native_tid == record["native_id"], name
        assert os.path.isdir("/proc/%d/task/%d" % (target.pid, stack.native_tid))
    assert isinstance(stacks[0], ThreadStack)


def test_columns_of_sleeping_calls(stacks_target):
    label, target, proc = stacks_target
    got = settled(proc, target, label)
    for name in ("sleeper", "MainThread", "lambda", "init", "unicode"):
        stack, frames = got[name]
        info = proc.codes.describe(*stack.frames[0])
        assert isinstance(info, FrameInfo)
        if not has_columns(label):
            assert info.column == -1
            continue
        with open(target.host_path(info.filename), encoding="utf-8") as f:
            source = f.read().splitlines()[info.line - 1]
        # the CALL's position starts at the callee expression, e.g. "time.sleep(...)"
        assert info.column == source.index("time.sleep"), (name, source)


def test_gil_holder_is_a_running_thread(stacks_target):
    label, target, proc = stacks_target
    by_ident = threads_by_name(target)
    holders = Counter()
    for _ in range(300):
        stacks = proc.sample_threads()
        held = [by_ident[s.python_thread_id][0] for s in stacks if s.holds_gil]
        # THEN at most one thread holds the GIL at a time
        assert len(held) <= 1
        holders.update(held)
        time.sleep(0.001)
    # AND sleeping threads never hold it, while a CPU-bound one sometimes does
    assert set(holders) <= {"spinner", "generator"}, holders
    assert holders, "no sample saw the GIL held"


def test_no_torn_reads_on_a_steady_target(stacks_target):
    label, target, proc = stacks_target
    before = proc.torn_reads
    for _ in range(200):
        proc.sample_threads()
    assert proc.torn_reads - before <= 2


def test_a_round_whose_interpreter_read_tears_is_empty_and_the_next_is_whole(stacks_target):
    """A read of the interpreter state that fails (a process starting, forking or ending
    under the read) gives a round without stacks, counted torn; the round after is whole."""
    label, target, proc = stacks_target
    walker = proc.walker
    whole = len(proc.sample_threads())
    real = walker._sample_interpreter

    def torn(*args):
        raise MemoryReadError("the interpreter state changed under the read")

    walker._sample_interpreter = torn
    try:
        before = proc.torn_reads
        assert walker.sample() == []
        assert proc.torn_reads == before + 1
    finally:
        walker._sample_interpreter = real
    assert len(proc.sample_threads()) == whole, label


def test_thread_names_are_the_threading_names(stacks_target):
    label, target, proc = stacks_target
    by_ident = threads_by_name(target)
    # WHEN asked by ident and TID THEN each thread's name is its threading.Thread name, whichever
    # way the Thread object stores its attributes (see stacks.py)
    names = {by_ident[s.python_thread_id][0]: proc.naming.threading_name(s.python_thread_id,
                                                                          s.native_tid)
             for s in proc.sample_threads()}
    assert names == {name: name for name in names}
    assert len(names) == len(by_ident)
    # AND an unknown thread is simply unnamed
    assert proc.naming.threading_name(0x7FFF0000, 2 ** 31 - 1) is None


# -- deep stacks, churn, exit -----------------------------------------------------------------


@pytest.mark.parametrize("label", ALL_SUPPORTED)
def test_deep_stack_across_datastack_chunks(label, target_under):
    depth = 300  # ~40 KiB of 3.11+ frames: three 16 KiB datastack chunks
    target, proc = target_under(label, "deep.py", "60", str(depth), "sleep")

    def deep_stack():
        stacks = proc.sample_threads()
        if stacks and len(stacks[0].frames) == depth + 1:
            if proc.codes.describe(*stacks[0].frames[0]).name == "leaf":
                return stacks[0]
        return None

    stack = wait_until(deep_stack)
    assert stack and not stack.torn
    frames = [proc.codes.describe(*f) for f in stack.frames]
    assert [f.name for f in frames] == ["leaf"] + ["level"] * (depth - 1) + ["<module>"]
    assert [f.line for f in frames[:3]] == [DEEP_MARKS["leaf-sleep"], DEEP_MARKS["level-leaf"],
                                            DEEP_MARKS["level"]]
    assert frames[-1].line == DEEP_MARKS["deep-call"]
    assert stack.native_tid == target.pid


@pytest.mark.parametrize("label", ALL_SUPPORTED)
def test_threads_that_come_and_go(label, target_under):
    target, proc = target_under(label, "churn.py", "60", "4")
    main_ident = target.info["main"]["ident"]
    workers = set()
    good = bad = 0
    start = time.monotonic()
    samples = 0
    while time.monotonic() < start + 0.5 or len(workers) < 10 and time.monotonic() < start + 8:
        samples += 1
        time.sleep(0.001)  # leave the target some CPU (2 vCPUs, 5 busy threads)
        for stack in proc.sample_threads():  # THEN it never raises
            if stack.python_thread_id == main_ident or stack.torn or not stack.frames:
                continue
            workers.add(stack.native_tid)
            try:
                names = [proc.codes.describe(*f).name for f in stack.frames]
            except MemoryReadError:
                bad += 1
                continue
            good += names[-1] == "_bootstrap"
            bad += names[-1] != "_bootstrap"
    # AND new threads are picked up as they appear, with sane stacks
    assert len(workers) >= 5, workers
    assert good >= 10 * max(bad, 1) or bad <= 2, (good, bad)
    assert proc.torn_reads < samples


@pytest.mark.parametrize("label", ["3.8", "3.9", "3.10"])
def test_a_thread_made_where_the_last_one_was_is_not_taken_for_it(label):
    """A thread that ends and the next one started to wait where it waited: on <=3.10 the new
    one can have the old one's thread state, frame and pthread addresses, and no TID in its
    state.  Even with the old thread counted still (a stack kept from the last round), the new
    one's stack carries its own TID."""
    with running_target(python_for(label), "successive_threads.py", "30") as target, \
            attached(target.pid) as proc:
        first = target.info["thread"]
        before = {s.native_tid: s for s in proc.walker.sample()}
        assert before[first["native_id"]].frames
        alike = 0
        for _ in range(3):
            os.kill(target.pid, signal.SIGUSR2)
            second = next_json_line(target)["thread"]
            alike += second["ident"] == first["ident"]   # glibc's struct pthread handed on
            tids = {s.python_thread_id: s.native_tid for s in proc.walker.sample({first["native_id"]})}
            assert tids[second["ident"]] == second["native_id"], (label, first, second, tids)
            first = second
        assert alike, "no thread took the last one's struct pthread: the case is not tested"


@pytest.mark.parametrize("label", ["3.8", "3.11", "3.13", "3.15"])
def test_target_exit_raises_target_not_found(label):
    python = python_for(label)
    with running_target(python, "deep.py", "0.5", "5", "spin") as target:
        with attached(target.pid) as proc:
            def gone():
                try:
                    proc.sample_threads()
                except TargetNotFound:
                    return True
                return False

            assert wait_until(gone, timeout=10, interval=0.0)
            with pytest.raises(TargetNotFound):
                proc.sample_threads()


@pytest.mark.parametrize("label", ["3.8", "3.11", "3.13", "3.15"])
def test_target_in_its_own_pid_namespace(label):
    # GIVEN a target in a new PID namespace (pid 1 there), as in a container (3.15: also in
    # the sid root, so its files are only reachable through /proc/PID/root)
    if not shutil.which("unshare"):
        pytest.skip("unshare not installed")
    python = python_for(label)
    prefix = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]  # no orphan left
    try:
        context = running_target(python, "stacks.py", "60", prefix=prefix)
        target = context.__enter__()
    except RuntimeError as exc:
        pytest.skip("cannot create a PID namespace here: %s" % exc)
    try:
        assert target.info["pid"] == 1
        with open("/proc/%d/task/%d/children" % (target.pid, target.pid)) as f:
            host_pid = int(f.read().split()[0])
        by_ident = threads_by_name(target)
        with attached(host_pid) as proc:
            stacks = proc.sample_threads()
            assert len(stacks) == len(by_ident)
            for stack in stacks:
                name, record = by_ident[stack.python_thread_id]
                # THEN TIDs are the host's (usable with /proc), mapped from the target's own
                with open("/proc/%d/task/%d/status" % (host_pid, stack.native_tid)) as f:
                    nspid = f.read().split("NSpid:")[1].split("\n")[0].split()
                assert int(nspid[-1]) == record["native_id"], name
                # AND names still come from threading
                assert proc.naming.threading_name(stack.python_thread_id, stack.native_tid) == name
    finally:
        context.__exit__(None, None, None)


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("label", UNSUPPORTED)
def test_unsupported_python_is_named(label):
    with running_target(python_for(label), "deep.py", "30") as target:
        with pytest.raises(UnsupportedPython) as err:
            PythonProcess.attach(target.pid)
    message = str(err.value)
    assert "Python %s." % label in message and "\n" not in message
    assert target.info["python"] in message


def test_not_python():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        wait_until(lambda: os.readlink("/proc/%d/exe" % sleeper.pid).endswith("sleep"))
        with pytest.raises(NotPython) as err:
            PythonProcess.attach(sleeper.pid)
        assert "\n" not in str(err.value)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_nonexistent_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read())  # PIDs are always below pid_max
    with pytest.raises(TargetNotFound):
        PythonProcess.attach(pid)


def test_executable_deleted_after_start(tmp_path):
    # GIVEN a static python whose binary was deleted after it started (a package upgrade)
    source = python_for("3.11-debian")
    copy = tmp_path / "python3.11"
    shutil.copy2(source, copy)
    with running_target(str(copy), "deep.py", "60", "5", "sleep") as target:
        copy.unlink()
        assert os.readlink("/proc/%d/exe" % target.pid).endswith(" (deleted)")
        # WHEN attached THEN symbols come from the mapped inode and the walk works
        with attached(target.pid) as proc:
            assert proc.version_string == target.info["python"]
            stacks = wait_until(lambda: [s for s in proc.sample_threads() if len(s.frames) == 6])
            names = [proc.codes.describe(*f).name for f in stacks[0].frames]
            assert names[-1] == "<module>" and "level" in names


class _RecordedMemory:
    """A target's memory whose reads during one walk are kept, for a second walker to replay.

    A range read twice in one walk gives what it gave the first time, so that both walkers see
    the same memory.
    """

    def __init__(self, mem):
        self.mem = mem
        self.reads = {}

    def read(self, addr, size):
        data = self.reads.get((addr, size))
        if data is None:
            data = self.reads[(addr, size)] = self.mem.read(addr, size)
        return data

    read_small = read

    def read_many(self, ranges):
        results = self.mem.read_many(ranges)
        for at, ((addr, size), data) in enumerate(zip(ranges, results)):
            if (addr, size) in self.reads:
                results[at] = self.reads[(addr, size)]
            elif data is not None:
                self.reads[(addr, size)] = data
        return results


class _Replay:
    """The reads of one walk, served again: a fresh walker sees exactly what the first saw."""

    def __init__(self, reads):
        self.reads = reads

    def read(self, addr, size):
        data = self.reads.get((addr, size))
        if data is not None:
            return data
        for (start, length), data in self.reads.items():  # part of a bigger read (a chunk
            if start == addr and size <= length:         # copied with its thread state)
                return data[:size]
        raise AssertionError("the replayed walk read %#x+%d, the first walk did not"
                             % (addr, size))

    read_small = read

    def read_many(self, ranges):
        return [self.reads.get(r) for r in ranges]


class _NoExpiry:
    """A code cache seen through a walker that must not start a new revalidation period."""

    def __init__(self, codes):
        self.codes = codes

    def expire(self, now):
        return False

    def __getattr__(self, name):
        return getattr(self.codes, name)


@pytest.mark.parametrize("label", [label for label in ALL_SUPPORTED
                                   if tuple(map(int, minor_of(label).split("."))) >= (3, 11)])
def test_reused_frames_equal_a_fresh_walk(label, target_under):
    # GIVEN a 3.11+ target whose stacks change shape all the time (depth, outer frames, calls
    # through C, generators), sampled by a walker that reuses unchanged frames of its last walk
    target, proc = target_under(label, "shapes.py", "30")
    walker = proc.walker
    recorded = _RecordedMemory(walker.mem)
    walker.mem, walker.read = recorded, recorded.read
    walks = compared = frames = 0
    deadline = time.monotonic() + 6
    while walks < 400 and time.monotonic() < deadline:
        recorded.reads = {}
        walker._gil_seen = {}  # walk every thread (no stack kept whole: see StackWalker.sample)
        retried, misfits = walker.retried_walks, walker.misfit_walks
        pattern = _copy_pattern(walker)
        stacks = walker.sample()
        if walker.retried_walks != retried or walker.misfit_walks != misfits:
            # A walk tore and was done again, or did not fit and was taken at one of its
            # copies' moments: the thread moved while it was read, so the same ranges gave
            # different bytes, which one set of reads cannot replay.
            continue
        # WHEN the same memory is walked by a fresh walker, which parses every frame
        fresh = _fresh_walker(proc, walker, _Replay(recorded.reads), pattern)
        # THEN both give the same stacks, frame for frame
        try:
            again = fresh.sample()
        except AssertionError:  # a read the first walker did not make
            if fresh.misfit_walks or fresh.retried_walks:
                continue  # (see below)
            raise
        assert len(again) == len(stacks)
        if fresh.misfit_walks or fresh.retried_walks:
            # Without the first walker's history of the thread, the fresh one found a walk
            # torn or not fitting where the first did not, and walked other copies.
            continue
        for walked, reused in zip(again, stacks):
            # A torn walk is cut where a code address fails to verify, and verifying reads the
            # live target again, so only untorn fresh walks are an exact reference.
            if not walked.torn:
                assert unstamped(reused) == unstamped(walked)
                compared += 1
                frames += len(walked.frames)
        walks += 1
    assert compared >= 300, "only %d stacks compared in 6 s" % compared
    # ... and most frames were taken from the last walk, not parsed again (about 90% here)
    assert walker.reused_frames > frames // 2, (walker.reused_frames, frames)


@pytest.mark.parametrize("label", ALL_SUPPORTED)
def test_stacks_that_keep_returning_through_deep_calls_are_rarely_torn(label, target_under):
    # GIVEN threads that call down and return back up all the time (shapes.py): a walk copies
    # the thread state, then the frames, and in between the innermost frames may return
    # (3.14+ clears a returning frame's code reference before the thread state shows it gone)
    target, proc = target_under(label, "shapes.py", "30")
    walks = 0
    first_tears = proc.walker.retried_walks
    misfits = proc.walker.misfit_walks
    deadline = time.monotonic() + 6
    # WHEN they are walked back to back
    while walks < 3000 and time.monotonic() < deadline:
        walks += len(proc.sample_threads())
    # THEN hardly any first walk is torn (before a torn walk is walked again): returned frames
    # are stepped over, not taken for garbage (3.14/3.15 still tear 1.1-2.1% here, 15 runs of
    # this test each, on other races; they tore 4-5% before).  On 3.11/3.12 a walk whose
    # innermost frame does not fit the thread state's chunk top is counted apart: most are
    # taken at one of their copies' moments, not walked again.  <=3.10 reads each frame
    # object by itself, and tears 1-3% here as the host's speed varies.  3.11-3.13 tore
    # 1.5-2% here until a new machine tore 2.1-3.0% on 3.12 (six of nine runs over 2%, as
    # before and after the change to how misfits are settled): not yet understood.
    misfits = proc.walker.misfit_walks - misfits
    first_tears = proc.walker.retried_walks - first_tears
    version = tuple(map(int, minor_of(label).split(".")))
    bar = 0.04 if version <= (3, 10) else 0.035
    assert walks >= 1000
    assert first_tears <= walks * bar, "%d of %d walks torn" % (first_tears, walks)
    assert misfits <= walks * (MISFITS_3_11 if minor_of(label) == "3.11" else 0.04), (
        "%d of %d walks did not fit" % (misfits, walks))


#: Walks that did not fit the chunk top in test_stacks_that_keep_returning_through_deep_calls_
#: are_rarely_torn: 3.7-6.1% on 3.11 and 1.6-2.5% on 3.12 in six runs each (the copies of one
#: walk made by back-to-back preads, which spread them a little more than one process_vm_readv
#: does: 3.4-4.1% and 1.2-1.7% with it, whose running walks came further from the stopped
#: program's, docs/benchmarks.md "Running walks next to walks of the stopped program").  A
#: misfit is not a wrong stack: it is settled from the copies at hand or walked again.
MISFITS_3_11 = 0.08


#: Beyond the sampling margin: stacks copied at interrupts, which read nothing from outside,
#: come up to 1.6 points under short_reads.py's own timing of its reads (docs/benchmarks.md, "A
#: short call that releases the GIL"), and reads from outside lose another point or so with
#: another process busy on the machine.  Before walks that straddle a call were taken at one
#: moment, reads from outside came 5-7 points under on 3.12 and 3.11.
SHORT_CALL_SLACK = 0.02


@pytest.mark.parametrize("label", ["3.11", "3.12"])
def test_a_short_call_read_from_outside_gets_its_share(label, tmp_path):
    # GIVEN a loop of Python work and a read of a few microseconds (short_reads.py), whose
    # calls before and after it put their frames where it puts its own (3.11+), and which
    # times its share of the run itself
    marks = marked_lines(target_path("short_reads.py"))
    timed_lines = {marks["timed"], marks["call"], marks["after"]}
    out = tmp_path / "short.spy"
    # WHEN it is recorded at 1 kHz from its start, reading its frames from outside (no copies
    # at interrupts)
    result = spyrec("-o", out, "-r", "1000", "--no-bpf", "--", python_for(label),
                    target_path("short_reads.py"), "3")
    assert result.returncode == 0, result.stderr
    own = json.loads(result.stdout.strip().splitlines()[-1])
    stacks = Stacks(load(out))
    reading = around = total = 0
    for stack_id in stacks.rec.samples["stack"].tolist():
        frames = stacks.stack(stack_id)
        if not frames:
            continue
        total += 1
        reading += frames[0][0] == "reading"
        around += frames[0][0] == "main" and frames[0][2] in timed_lines
    # THEN the samples in ``reading`` come to the share the target timed, which lies between
    # them and them with the samples on the lines that time it: walks that straddle a call or
    # a return are taken at one of their copies' moments (walked again, they fell later, out
    # of the short call; taken as they came, in or out of it by the frames' sizes)
    assert total > 2000, total
    margin = sampling_margin(own["read_share"], total) + SHORT_CALL_SLACK
    assert reading / total - margin <= own["read_share"] <= (reading + around) / total + margin, (
        label, reading / total, (reading + around) / total, own, margin)


#: The system calls a thread of ``time.sleep`` waits in: select (3.8-3.10), clock_nanosleep.
SLEEP_CALLS = {"23", "230"}


def _asleep(pid):
    """The process's main thread waits in the system call of ``time.sleep``."""
    with open("/proc/%d/syscall" % pid) as f:
        return f.read().split(" ", 1)[0] in SLEEP_CALLS


def _walked_once(proc, target):
    """(the walker, its reads, its stacks) of one walk of every thread of ``proc``, once its
    main thread sleeps: the replays of these reads expect a first walk that did not tear (one
    done again while the thread still ran keeps reads of two moments, which no replay fits)."""
    assert wait_until(lambda: _asleep(target.pid)), "the target never went to sleep"
    walker = proc.walker
    recorded = _RecordedMemory(walker.mem)
    walker.mem, walker.read = recorded, recorded.read
    stacks = walker.sample()
    assert walker.retried_walks == 0
    return walker, recorded.reads, stacks


def _copy_pattern(walker):
    """What decides which ranges ``walker`` copies with each thread state (its threads' C
    frames, frames outside the chunk, and chunk extents), as it stands before a sample."""
    return ({tstate: list(cframes) for tstate, cframes in walker._cframes.items()},
            {tstate: dict(pool) for tstate, pool in walker._pools.items()},
            {tstate: (memo.chunk, len(memo.buf)) for tstate, memo in walker._memos.items()})


def _fresh_walker(proc, walker, memory, pattern=None):
    """A new walker of ``proc`` over ``memory``, sharing ``walker``'s verified code objects;
    given a ``_copy_pattern``, it copies the same ranges as the walker it was taken from did
    (whose copies made in one call are of one moment each, which no other set of reads
    replays), but parses every frame."""
    from spyrec.chunkwalk import ChunkMemo
    from spyrec.walker import StackWalker
    fresh = StackWalker(memory, proc.layout, proc.runtime_address, _NoExpiry(proc.codes),
                        pthread_tid_offset=walker.pthread_tid_offset, host_tid=walker.host_tid)
    fresh._gil_pointers = dict(walker._gil_pointers)  # read once per period, not per walk
    if pattern is not None:
        fresh._cframes, fresh._pools, extents = pattern
        # a chunk's extent and no frames of a last walk: nothing is taken from it
        fresh._memos = {tstate: ChunkMemo(chunk, bytes(size), [], [], [], [], [])
                        for tstate, (chunk, size) in extents.items()}
    return fresh


class _ChunkTornOnce(_Replay):
    """Replayed reads in which the first copy of each given frame chunk comes back torn: the
    frames past the chunk header are overwritten, as by a call made during the copy."""

    def __init__(self, reads, chunks, header, times=1):
        super().__init__(reads)
        self.torn_left = {key: times for key in reads if key[0] in chunks}
        self.header = header

    def read(self, addr, size):
        data = super().read(addr, size)
        if self.torn_left.get((addr, size), 0) > 0:
            self.torn_left[(addr, size)] -= 1
            return data[:self.header] + b"\xff" * (size - self.header)
        return data

    read_small = read


class _FailingReads(_Replay):
    """Replayed reads of which those at ``addr`` fail, as reads of freed memory do."""

    def __init__(self, reads, addr):
        super().__init__(reads)
        self.addr = addr

    def read(self, addr, size):
        if addr == self.addr:
            raise MemoryReadError("freed at %#x" % addr)
        return super().read(addr, size)

    read_small = read

    def read_many(self, ranges):
        return [None if addr == self.addr else data
                for (addr, _), data in zip(ranges, super().read_many(ranges))]


class _TornUnlessCopiedTogether(_ChunkTornOnce):
    """Replayed reads in which a frame chunk read on its own always comes back torn, and whole
    when it is read in one call with its thread state (more than the chunk's used part is then
    asked for: what lies past it reads as zeros)."""

    def __init__(self, reads, chunks, header):
        super().__init__(reads, chunks, header, times=10 ** 9)
        self.together = 0

    def read_many(self, ranges):
        self.together += 1
        out = []
        for addr, size in ranges:
            used = max((n for a, n in self.reads if a == addr and n <= size), default=None)
            out.append(None if used is None else self.reads[(addr, used)] + bytes(size - used))
        return out


@pytest.mark.parametrize("label", [label for label in ALL_SUPPORTED
                                   if minor_of(label) in ("3.11", "3.12")])
def test_a_walk_that_fails_keeps_its_thread(label, target_under):
    # GIVEN a 3.11/3.12 thread, walked once with its reads kept; its innermost frame is found
    # through an 8-byte read of its current C frame
    target, proc = target_under(label, "deep.py", "60", "30", "sleep")
    walker, reads, stacks = _walked_once(proc, target)
    assert stacks[0].native_tid == target.info["main"]["native_id"] and stacks[0].frames
    (state, *_), = walker._last.values()
    current_frame_at = state[1] + proc.layout.cframe.current_frame  # tstate->cframe
    assert (current_frame_at, 8) in reads
    # WHEN a fresh walker replays them and that read fails every time
    fresh = _fresh_walker(proc, walker, _FailingReads(reads, current_frame_at))
    again = fresh.sample()
    # THEN the stack is torn and empty, and still the thread's: not one of a thread "0"
    assert [(s.native_tid, s.frames, s.torn) for s in again] == [
        (stacks[0].native_tid, (), True)]


@pytest.mark.parametrize("label", [label for label in ALL_SUPPORTED if has_frame_chunks(label)])
def test_a_torn_walk_is_walked_again_at_once(label, target_under):
    # GIVEN a 3.11+ thread asleep in a 30-deep stack, walked once with its reads kept
    from spyrec.walker import WALK_ATTEMPTS
    target, proc = target_under(label, "deep.py", "60", "30", "sleep")
    walker, reads, stacks = _walked_once(proc, target)
    assert [len(stack.frames) for stack in stacks] == [31] and not stacks[0].torn
    chunks = {state[4] for state, *_ in walker._last.values()}  # datastack_chunk

    def replayed(times):
        memory = _ChunkTornOnce(reads, chunks, proc.layout.chunk.data, times)
        fresh = _fresh_walker(proc, walker, memory)
        return fresh, fresh.sample()

    # WHEN a fresh walker replays those reads, the first copies of the frame chunk torn
    for torn_copies in range(1, WALK_ATTEMPTS):
        fresh, again = replayed(times=torn_copies)
        # THEN it walks the thread again and returns the whole stack, not a torn one, said to
        # be read again (counted in the recording's trailer)
        assert unstamped(again) == unstamped(stacks)
        assert (fresh.retried_walks, fresh.torn_reads) == (torn_copies, 0)
        assert again[0].reread and not stacks[0].reread
    # ... and only a chunk that comes back torn at every attempt gives a torn, cut stack,
    # counted as such (not as one read again)
    fresh, again = replayed(times=WALK_ATTEMPTS)
    assert again[0].torn and len(again[0].frames) < 31 and not again[0].reread
    assert (fresh.retried_walks, fresh.torn_reads) == (WALK_ATTEMPTS - 1, 1)


@pytest.mark.parametrize("label", [label for label in ALL_SUPPORTED if has_frame_chunks(label)])
def test_a_walk_done_again_copies_the_thread_state_and_its_frames_together(label, target_under):
    # GIVEN a 3.11+ thread asleep in a 30-deep stack, walked once with its reads kept
    target, proc = target_under(label, "deep.py", "60", "30", "sleep")
    walker, reads, stacks = _walked_once(proc, target)
    chunks = {state[4] for state, *_ in walker._last.values()}  # datastack_chunk
    # WHEN a fresh walker replays them, each copy of the frame chunk made on its own torn (the
    # thread keeps moving between the separate reads), one made with the thread state whole
    memory = _TornUnlessCopiedTogether(reads, chunks, proc.layout.chunk.data)
    fresh = _fresh_walker(proc, walker, memory)
    again = fresh.sample()
    # THEN the walk done again copies them in one read, and gets the whole stack
    assert memory.together == 1
    assert unstamped(again) == unstamped(stacks)
    assert (fresh.retried_walks, fresh.torn_reads) == (1, 0)


def test_a_thread_list_cut_short_gives_no_thread_0_and_no_empty_creator():
    """A walk of a list whose states come and go (tests/targets/churn.py) is cut short by a
    state freed under it now and then: under load, 1 round in 30,000-150,000 gave the main
    thread a sample without frames (a state made for a new thread, with its creator's ids,
    before the cut; the creator's own state after it), or a thread 0 (a thread ending, its
    TID cleared by the kernel, alone in the round).  Too rare to provoke in a test: the
    stacks such rounds gave, through the rule that drops them."""
    from spyrec.threads import bound_states

    main, worker = 100, 101
    new_state = ThreadStack(main, 7, (), False, False)  # made by main, not bound yet
    ending = ThreadStack(0, 8, ((1, 2),), False, False)
    running = ThreadStack(worker, 9, ((1, 2),), True, False)
    assert bound_states([new_state, running], tids_known=True, whole=False) == [running]
    assert bound_states([ending], tids_known=True, whole=False) == []
    assert bound_states([ending], tids_known=True) == []
    # whole lists, as before: a state without frames is its thread's own when nobody else's
    idle = ThreadStack(main, 7, (), False, False)
    assert bound_states([idle, running], tids_known=True) == [idle, running]
    assert bound_states([new_state, running, ThreadStack(main, 6, ((1, 2),), False, False)],
                        tids_known=True) == [running, ThreadStack(main, 6, ((1, 2),), False, False)]
    # TIDs not readable (the pthread offset not found yet): every stack is kept under 0
    assert bound_states([ending], tids_known=False) == [ending]


class _StateFreed:
    """A target's memory in which one thread state reads as freed whenever it is read whole,
    as the state of a thread that ended while the walk followed the list (its link to the next
    state still reads: the list, followed again, passes over it)."""

    def __init__(self, mem, tstate, size):
        self.mem, self.tstate, self.size = mem, tstate, size
        self.read_small = mem.read_small

    def _freed(self, addr, size):
        return addr == self.tstate and size >= self.size

    def read(self, addr, size):
        if self._freed(addr, size):
            raise MemoryReadError("freed at %#x" % addr)
        return self.mem.read(addr, size)

    def read_many(self, ranges):
        freed = [self._freed(addr, size) for addr, size in ranges]
        return [None if gone else data for gone, data in zip(freed, self.mem.read_many(ranges))]


@pytest.mark.parametrize("label", ["3.10", "3.12", "3.13"])
def test_a_thread_state_freed_under_the_walk_leaves_out_no_other_thread(label, target_under):
    # GIVEN six threads asleep, walked whole
    target, proc = target_under(label, "many_threads.py", "60", "5", "0")
    walker = proc.walker
    want = {record["native_id"] for record in target.info["threads"].values()}
    want.add(target.info["main"]["native_id"])
    assert wait_until(lambda: {s.native_tid for s in proc.sample_threads()} == want)
    (order,) = walker._orders.values()  # the thread states as the list links them
    states = dict(walker.tstates)
    # WHEN a state in the middle of the list reads as freed: its thread ended while the walk
    # followed the list, and took its link to the next state with it
    freed = order[len(order) // 2]
    walker.mem = _StateFreed(walker.mem, freed, walker._ts_size)
    walker.read = walker.mem.read
    stacks = walker.sample()
    # THEN the list is followed again from its head: every other thread is in the round, the
    # threads before the freed state once each, and the list counts as whole
    tids = [stack.native_tid for stack in stacks]
    assert len(tids) == len(set(tids)) == len(want) - 1 and set(tids) < want
    assert not walker.list_cut
    # ... and each thread is known by its own state (for its name, and its stack copies)
    assert walker.tstates == {tid: state for tid, state in states.items() if state != freed}


@pytest.mark.parametrize("label", ["3.12", "3.13"])
def test_a_thread_state_made_again_for_a_new_thread_drops_the_old_threads_copies(label,
                                                                                 target_under):
    # GIVEN a thread walked once, then left what the walks of an earlier thread at the same
    # thread state address would leave: a C frame and a frame outside its chunk of that thread
    target, proc = target_under(label, "deep.py", "60", "30", "sleep")
    assert wait_until(lambda: _asleep(target.pid))
    walker = proc.walker
    walker.sample()
    (tstate,) = walker._orders[next(iter(walker._orders))]
    stale_cframe, stale_frame = 0x7F0000001000, 0x7F0000002000
    walker._cframes[tstate] = [stale_cframe] + walker._cframes.get(tstate, [])
    walker._pools[tstate] = {stale_frame: 1}
    walker._owners[tstate] = target.info["main"]["native_id"] + 1
    stale = {stale_frame}
    if proc.layout.cframe:  # (3.11/3.12 only)
        stale.add(stale_cframe + proc.layout.cframe.current_frame)
    # WHEN it is walked twice more (not kept from the last walk), the ranges it asks for kept
    asked = _AskedRanges(walker.mem)
    walker.mem, walker.read = asked, asked.read
    walker._last.clear()
    walker.sample()
    first = set(asked.addresses)
    asked.addresses.clear()
    walker._last.clear()
    stacks = walker.sample()
    # THEN the first walk finds the thread state now another thread's and forgets them (3.12
    # copies them with the thread state at every walk, 3.13+ the frames at walks done again):
    # the next copies none of them, and its stack is whole
    if proc.layout.cframe:
        assert stale <= first
    assert not stale & set(asked.addresses)
    assert stale_frame not in walker._pools.get(tstate, {})
    assert stale_cframe not in walker._cframes.get(tstate, [])
    assert walker._owners[tstate] == target.info["main"]["native_id"]
    assert len(stacks[0].frames) == 31 and not stacks[0].torn


class _AskedRanges:
    """A target's memory that keeps the address of every range asked of it."""

    def __init__(self, mem):
        self.mem, self.addresses = mem, []

    def read(self, addr, size):
        self.addresses.append(addr)
        return self.mem.read(addr, size)

    read_small = read

    def read_many(self, ranges):
        self.addresses.extend(addr for addr, _ in ranges)
        return self.mem.read_many(ranges)


def _innermost_now(proc, tstate):
    """The name of the function a thread runs, from three reads of a few bytes (its C frame
    where it has one, that frame's innermost frame, the frame's code): about a microsecond of
    reading, against the several of a whole walk."""
    layout, read = proc.layout, proc.walker.mem.read
    frame = struct.unpack("<Q", read(tstate + layout.thread.frame, 8))[0]
    if layout.cframe is not None:
        frame = struct.unpack("<Q", read(frame + layout.cframe.current_frame, 8))[0]
    code = struct.unpack("<Q", read(frame + layout.frame.code, 8))[0]
    key = proc.codes.keys_for([code & ~layout.executable_tag_mask])[0]
    return proc.codes.describe(key, 0).name if key is not None and key >= 0 else None


@pytest.mark.parametrize("label", ["3.11", "3.12", "3.13"])
def test_walks_from_outside_find_the_thread_where_quick_reads_do(label, target_under):
    # GIVEN a loop that decodes JSON rows (json_rows.py): the stack goes in and out of the same
    # three frames every couple of microseconds, half the time in raw_decode's C scanner
    target, proc = target_under(label, "json_rows.py", "60")
    proc.sample_threads()
    (tstate,) = next(iter(proc.walker._orders.values()))
    walks, quick = Counter(), Counter()
    # WHEN it is walked from outside, and by turns its innermost function read in a few bytes
    for turn in range(4000):
        time.sleep(0.0005)
        if turn % 2:
            stacks = proc.sample_threads()
            if stacks and stacks[0].frames:
                walks[proc.codes.describe(*stacks[0].frames[0]).name] += 1
        else:
            try:
                quick[_innermost_now(proc, tstate)] += 1
            except MemoryReadError:
                pass
    # THEN the walks find it in each function as often as the quick reads (Austin, which reads
    # the thread as it runs, agrees with them within a point here)
    apart = {name: walks[name] / sum(walks.values()) - quick[name] / sum(quick.values())
             for name in ("raw_decode", "aggregate")}
    bound = QUICK_READS_3_11 if minor_of(label) == "3.11" else QUICK_READS
    assert max(map(abs, apart.values())) <= bound, (label, apart)


#: How far walks from outside may come from the quick reads on json_rows.py on 3.12/3.13:
#: 0.5-3 points in most runs, raw_decode 5.2 under once in a clean-clone run on a slow
#: evening (2026-12-06, the whole suite 4% slower than two hours before).
QUICK_READS = 0.07
#: How far walks from outside may come from the quick reads on json_rows.py on 3.11: raw_decode
#: within 2 points, aggregate 1-5 under in six runs here (3.12: 0.5-3); 3.11 takes a walk
#: that does not fit the thread state's datastack top from that top, whose frame is being
#: pushed or popped a little more often than the C frame's slot names it.  While such walks
#: were taken at the C frame's slot as copied before the chunk, raw_decode came 20-25 points
#: over on both (spyrec.walker._walk_chunks).
QUICK_READS_3_11 = 0.08
