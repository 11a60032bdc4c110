"""The sampling loop in-process against real targets: what it may keep from one round to the next.

A thread whose frames cannot have changed since the last round keeps the stack read then:
one found asleep that has not been on a CPU since (ThreadStats.refresh), or one that has not
held the GIL while no other thread took it (StackWalker.sample).  These tests record a thread
that keeps waking up and moving between two sleeping lines, and check every sample against the
target's own log of where it was.
"""

import bisect
import os

import pytest

from pythons import SOME_VERSIONS, marked_lines, python_for, running_target, target_path
from rounds import Rounds
from spyrec.recorder import record
from spyformat import SampleFlag, SpyWriter, read_recording
from spyrec.walker import StackWalker


#: Without the switches recorded, whether a thread ran is read from /proc, the same on every version:
#: two of them.
NAP_RUNS = [(label, "recorded") for label in SOME_VERSIONS] + [
    ("3.8", "not recorded"), ("3.12", "not recorded")]


@pytest.mark.parametrize("label,switches", NAP_RUNS)
def test_a_sleeping_thread_keeps_its_stack_only_while_it_has_not_run(tmp_path, label, switches,
                                                                     monkeypatch):
    # GIVEN a thread that naps at @nap-a and @nap-b in turn, a few ms each, waking up into a
    # GIL held by a spinning thread, and a recorder that tells which stacks it kept and when
    # each round ended (a sample's stack was read between its timestamp and then); as root,
    # with the threads' switches recorded or not (SPYREC_SWITCHES=0: how a thread is, read
    # from /proc; without, its stack as it left its CPU serves while it sleeps, nothing kept)
    python = python_for(label)
    if switches == "not recorded":
        monkeypatch.setenv("SPYREC_SWITCHES", "0")
    kept = []
    kept_stack = StackWalker._kept_stack

    def keeping(walker, tstate, entry, holds_gil, by_gil):
        kept.append((entry[1].native_tid, by_gil))
        return kept_stack(walker, tstate, entry, holds_gil, by_gil)

    def repeating(writer, t, pid, rss, rows):  # dormant threads' last samples, not read again
        kept.extend((tid, False) for tid in rows[0])
        return write_samples(writer, t, pid, rss, rows)

    write_samples = SpyWriter.samples
    monkeypatch.setattr(StackWalker, "_kept_stack", keeping)
    rounds = Rounds(monkeypatch)
    monkeypatch.setattr(SpyWriter, "samples", repeating)
    out, log = tmp_path / "naps.spy", tmp_path / "naps.log"
    with running_target(python, "naps.py", "30", str(log)) as target:
        napper = target.info["threads"]["napper"]["native_id"]
        # WHEN it is recorded at 1 kHz
        stats = record(str(out), pid=target.pid, interval_ns=1_000_000, duration_ns=1_500_000_000)
    assert stats.samples > 1000
    naps = [line.split() for line in log.read_text().splitlines()]
    starts = [int(start) for start, _, _ in naps]
    lines = marked_lines(target_path("naps.py"))
    with open(out, "rb") as f:
        rec = read_recording(f)
    origin = rec.header["start_mono_ns"]
    frames = rec.frames
    checked = wrong = 0
    example = None
    samples = rec.samples
    for t, tid, stack_id, flags in zip(samples["t"].tolist(), samples["tid"].tolist(),
                                       samples["stack"].tolist(), samples["flags"].tolist()):
        if tid != napper or flags & SampleFlag.TORN:
            continue
        now = origin + t
        index = bisect.bisect_right(starts, now) - 1
        if index < 0 or int(naps[index][2]) < origin + rounds.end_of(t):
            continue  # not inside one nap for the whole round
        leaf = rec.stacks[stack_id][-1] if len(rec.stacks[stack_id]) else None
        line = frames["line"][leaf] if leaf is not None else None
        checked += 1
        if line != lines["nap-" + naps[index][1]]:
            wrong += 1
            example = (line, naps[index][1], (now - starts[index]) / 1e6)
    # THEN the napper's stack was often kept, by both rules (GIL in the spinner's hands all
    # along; napper not run since, read from /proc or, dormant, from the process's switch
    # count), and every sample taken inside a nap shows its line
    by_gil, by_proc = kept.count((napper, True)), kept.count((napper, False))
    if switches == "not recorded" or os.geteuid() != 0:
        assert by_gil > 100 and by_proc > 30, (by_gil, by_proc)
    assert checked > 500
    # (with the switches recorded, a round's moment that finds the napper on a CPU for a
    # moment, woken to ask for the GIL, shows it where its last timed copy found it, which may
    # be before the nap: one sample in a thousand or so)
    assert wrong <= (0.005 * checked if switches == "recorded" else 0), (wrong, checked, example)
