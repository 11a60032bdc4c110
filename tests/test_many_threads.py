"""A thousand threads, nearly all idle: each sampled every round with its own stack, at a cost
per round that does not collapse the rate (a thread pool or a server's workers look like this)."""

import os
import sys
from collections import Counter, defaultdict

import pytest

from pythons import (SOME_VERSIONS, marked_lines, python_for, round_cpu_costs, running_target,
                     target_path)
from spyrec.interpreter import PythonProcess
from spyrec.recorder import record
from spyrec.stackcapture import MIN_PERIOD_NS
from spyformat import SampleFlag
from spyrec.taskstats import ProcessSwitches
from test_record import Stacks, load
from rounds import Rounds

SLEEPERS = 1000
BUSY = 2
FILE = "many_threads.py"
#: How long a thread may take to fall asleep once at its wait, or to run once woken (it may
#: wait for the GIL or a CPU meanwhile, and reads as running or runnable).
WAKE_LATENCY_NS = 2_000_000
#: As root, a sample stamped at its round's moment shows a running thread as copied at its last
#: timed interrupt, up to a copy period before (spyrec.stackcapture, ``StackCapture.at``): the
#: samples this soon after a job or a wait begins are not judged.
COPY_LAG = MIN_PERIOD_NS
#: A job's CPU time is in the recording once its thread was read after it: a round or two.
TAIL_NS = 20_000_000


def innermost_in(stacks, stack_id, filename):
    """The innermost frame of a stack that is in ``filename`` (None for an empty stack)."""
    return next((frame for frame in stacks.stack(stack_id) if frame[1] == filename), None)


def test_a_thousand_idle_threads_are_each_sampled_every_round_with_their_stack(tmp_path,
                                                                              monkeypatch):
    # GIVEN a process with 1,000 threads blocked for good and 2 sharing the GIL, and a
    # recorder that tells the CPU time each round took (wall time would tell how busy the
    # machine is: other work on it took the recorder's CPU for seconds in some runs)
    costs = round_cpu_costs(monkeypatch.setattr)
    out = tmp_path / "many.spy"
    with running_target(sys.executable, "many_threads.py", "60", str(SLEEPERS), str(BUSY),
                        timeout=60) as target:
        # WHEN it is recorded at 1 kHz for 2 s
        record(str(out), pid=target.pid, interval_ns=1_000_000, duration_ns=2_000_000_000)
    truth = target.info
    stacks = Stacks(load(out))
    rec = stacks.rec
    ticks = rec.trailer["ticks"]
    # THEN every thread is in (nearly) every round
    expected = {ids["native_id"]: name for name, ids in truth["threads"].items()}
    expected[truth["main"]["native_id"]] = "MainThread"
    assert len(expected) == SLEEPERS + BUSY + 1
    tids = rec.samples["tid"].tolist()
    counts = Counter(tids)
    assert set(counts) == set(expected)
    assert min(counts.values()) >= 0.98 * ticks, (min(counts.values()), ticks)
    # AND each with its own stack: every sample of a sleeper at its wait, flagged idle
    marks = marked_lines(target_path(FILE))
    places = defaultdict(Counter)
    idle = Counter()
    for tid, stack_id, flags in zip(tids, rec.samples["stack"].tolist(),
                                    rec.samples["flags"].tolist()):
        places[tid][stack_id] += 1
        idle[tid] += bool(flags & SampleFlag.IDLE)
    for tid, name in expected.items():
        where = Counter()
        for stack_id, n in places[tid].items():
            where[innermost_in(stacks, stack_id, FILE)] += n
        if name.startswith("sleeper"):
            assert dict(where) == {("sleeper", FILE, marks["many-wait"]): counts[tid]}, where
            assert idle[tid] == counts[tid], name
        elif name.startswith("busy"):
            assert where.most_common(1)[0][0] == ("busy", FILE, marks["many-spin"]), where
        else:
            assert where.most_common(1)[0][0] == ("main", FILE, marks["many-main"]), where
    assert rec.trailer["errors"] <= 0.01 * rec.trailer["samples"]
    # AND a round costs what makes over 60 rounds a second possible on one CPU (the first two
    # meet every thread for the first time): before idle threads were made cheap, it cost
    # 21-30 ms of CPU, and at most 20-40 rounds a second were taken; where the kernel gives
    # the process's switch count, the idle threads are not read one by one, and a round
    # costs what makes 500 a second possible (reading each took 6-7 ms)
    steady = sorted(costs[2:])
    assert len(steady) >= 5
    median = steady[len(steady) // 2]
    assert median < 16_000_000, median
    if ProcessSwitches.open(os.getpid()) is not None:
        assert median < 2_000_000, median


def test_threads_past_the_usual_open_file_limit_keep_their_cpu_time_and_state(tmp_path):
    """Each thread keeps three or four /proc files open; started with a limit of 256 open
    files, the recorder raises it, so the busy threads (the oldest: read last) are still
    found running and using CPU (without it: never running, no CPU time)."""
    import resource
    import subprocess

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    out = tmp_path / "many.spy"
    with running_target(sys.executable, "many_threads.py", "30", "300", str(BUSY),
                        "busy-first", timeout=60) as target:
        result = subprocess.run([sys.executable, "-m", "spyrec", "-q", "-o", str(out), "-p",
                                 str(target.pid), "-d", "1", "-r", "100"], capture_output=True,
                                text=True, timeout=60, preexec_fn=low_limit)
        assert result.returncode == 0, result.stderr
    rec = load(out)
    for name in ("busy-%d" % n for n in range(BUSY)):
        tid = target.info["threads"][name]["native_id"]
        mine = rec.samples["tid"] == tid
        running = (rec.samples["flags"][mine] & SampleFlag.IDLE) == 0
        assert running.mean() > 0.2, name  # about half: the two share the GIL
        assert rec.samples["cpu"][mine].sum() > 0.2e9, name


@pytest.mark.parametrize("label", SOME_VERSIONS)
def test_a_dormant_worker_that_wakes_is_seen_working_from_its_first_round(label, tmp_path,
                                                                        monkeypatch):
    """Idle threads are not read one by one while the process's switch count says none ran
    (see spyrec.dormancy): a pool worker asleep for seconds, handed a job, is found at its
    job in every round that falls inside it, with the CPU time it used, and back at its wait
    in every round between its jobs."""
    # GIVEN a pool of 150 workers, one at a time woken for a job of 5-15 ms, and a recorder
    # that tells when each round ended and which rounds read the active threads alone
    python = python_for(label)
    alone = []
    sample_some = PythonProcess.sample_some_threads

    def some(process, tids, *args):
        stacks = sample_some(process, tids, *args)
        alone.append(stacks is not None)
        return stacks

    rounds = Rounds(monkeypatch)
    monkeypatch.setattr(PythonProcess, "sample_some_threads", some)
    out, log = tmp_path / "pool.spy", tmp_path / "jobs.log"
    with running_target(python, "pool.py", "30", "150", str(log), timeout=60) as target:
        # WHEN it is recorded at 1 kHz for 2 s
        record(str(out), pid=target.pid, interval_ns=1_000_000, duration_ns=2_000_000_000)
    workers = {ids["native_id"] for name, ids in target.info["threads"].items()}
    jobs, waits = defaultdict(list), defaultdict(list)
    for line in log.read_text().splitlines():
        tid, waited, woke, start, end, cpu = map(int, line.split())
        waits[tid].append((waited, woke))
        jobs[tid].append((start, end, cpu))
    stacks = Stacks(load(out))
    rec = stacks.rec
    origin = rec.header["start_mono_ns"]
    marks = marked_lines(target_path("pool.py"))
    samples = rec.samples
    # THEN every worker sample whose round lies inside one of its jobs is at the job, running,
    # and every one whose round lies inside one of its waits is at its wait, idle (but in its
    # first and last moments: going to sleep, and woken but queued for a CPU)
    at_job = at_wait = 0
    wrong = []
    recorded_cpu = Counter()
    for t, tid, stack_id, flags, cpu in zip(samples["t"].tolist(), samples["tid"].tolist(),
                                            samples["stack"].tolist(), samples["flags"].tolist(),
                                            samples["cpu"].tolist()):
        recorded_cpu[tid] += cpu  # (a torn sample's CPU time is as good as any)
        if tid not in workers or flags & SampleFlag.TORN:
            continue
        begin, end = (origin + at for at in rounds.of(t))
        line = (innermost_in(stacks, stack_id, "pool.py") or (None, None, None))[2]
        idle = bool(flags & SampleFlag.IDLE)
        if any(start + COPY_LAG <= begin and end <= stop for start, stop, _ in jobs.get(tid, ())):
            at_job += 1
            if line != marks["job-work"] or idle:
                wrong.append(("job", tid, t, line, idle))
        for waited, woke in waits.get(tid, ()):
            if waited + COPY_LAG <= begin and end <= woke:
                at_wait += 1
                settled = waited + WAKE_LATENCY_NS <= begin and end <= woke - WAKE_LATENCY_NS
                if line != marks["pool-wait"] or (not idle and settled):
                    wrong.append(("wait", tid, t, line, idle))
    assert at_job > 300 and at_wait > 1000, (at_job, at_wait)
    assert not wrong, (len(wrong), wrong[:5])
    # AND each worker's CPU time covers the jobs it ran while recorded: after the first round
    # (which reads each thread's CPU time so far, over tens of milliseconds) and before the
    # last rounds (the time a round reads was used before it)
    first = origin + rounds.end_of(int(samples["t"].min()))
    last = origin + samples["t"].max()
    for tid, mine in jobs.items():
        used = sum(cpu for start, stop, cpu in mine if first <= start and stop + TAIL_NS <= last)
        if used:
            assert recorded_cpu[tid] >= 0.9 * used, (tid, recorded_cpu[tid], used)
    # AND most rounds read the active threads alone, where the kernel gives the switch count
    if ProcessSwitches.open(os.getpid()) is not None:
        assert sum(alone) > 0.5 * len(rounds), (sum(alone), len(rounds))
