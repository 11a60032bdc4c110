"""A sample shows its thread as it was at the round's moment.

A round reads how each thread is from /proc, and takes a running thread's stack from its
newest copy (made at an interrupt) and a sleeping one's by reading it from outside: both a
little after the round's moment, when a thread that napped then may be back at work.  As root,
each thread's switches are recorded and a copy is made each time it leaves its CPU
(spyrec.switches, ``StackCapture.at``), so that a round takes the thread as it was at the
round's moment.
"""

import json

import pytest

import spyanalyze
from pythons import SOME_VERSIONS, launch_argv, python_for
from test_record import spyrec

#: How far (in share points) a part's share of the samples may be from its share of the time
#: by the target's clock (-1.8 to +1.4 in runs on 3.8, 3.11, 3.12, 3.13; 8 to 30 points off
#: when a round read the thread a little after its moment).
TOLERANCE = 0.03
OUTSIDE = "/outside"


@pytest.mark.parametrize("label", list(SOME_VERSIONS) + ["3.11" + OUTSIDE])
def test_a_thread_that_works_and_naps_in_turn_gets_each_part_at_its_time(tmp_path, label):
    # GIVEN a thread that computes 0.4 ms and naps 0.3 ms in turn, timing each part
    # (tests/targets/work_naps.py): a round that comes during a nap finds the thread back at
    # work tens of microseconds later
    outside = label.endswith(OUTSIDE)
    python = python_for(label[:-len(OUTSIDE)] if outside else label)
    out = tmp_path / "naps.spy"
    # WHEN spyrec records it at 1 kHz, as root (or read from outside)
    result = spyrec("-q", "-o", out, "-r", "1000", *(["--no-bpf"] if outside else []), "--",
                    *launch_argv(python, "work_naps.py", "3"))
    assert result.returncode == 0, result.stderr
    own = json.loads(result.stdout.splitlines()[-1])
    # THEN each part's share of the thread's samples (idle ones included, weighed as the
    # analyser weighs them) is its share of the time
    rec = spyanalyze.load(out)
    names = rec.frames["qualname"].tolist()
    frames = rec.stacks["frames"]
    weights = rec.samples["ticks"].to_numpy()
    stacks = [{names[f] for f in frames[s]} for s in rec.samples["stack"].tolist()]
    loop = sum(w for w, stack in zip(weights, stacks) if "main" in stack)
    assert loop > 2000, (label, loop)
    for part in ("crunch", "nap"):
        share = sum(w for w, stack in zip(weights, stacks) if "main" in stack and part in stack)
        assert abs(share / loop - own[part]) <= TOLERANCE, (label, part, share / loop, own)
