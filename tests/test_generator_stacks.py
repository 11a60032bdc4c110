"""Whole stacks through generators and coroutines, under every installed CPython.

A generator clears its frame's link to its caller each time it yields, so a walker that reads
frames while the target runs can end a stack at a generator's frame with its callers lost.  The
generators target (tests/targets/generators.py) spends its time in six such shapes and measures
how long it spent in each; its recording must have every stack rooted at ``<module>`` and each
phase's total share where the target's own clock puts it.
"""

import json
import os
from collections import Counter

import pytest

import spyanalyze
from pythons import ALL_SUPPORTED, python_for, running_target
from spyrec.spyformat import SampleFlag
from test_record import Stacks, load, spyrec

#: Share of the target's samples that must be rooted at its ``<module>``.
ROOTED = 0.99
#: How far (in share points) a phase's total may be from the target's own measurement.
TOLERANCE = 0.02


@pytest.fixture(scope="module", params=ALL_SUPPORTED)
def generators_recording(request, tmp_path_factory):
    """The generators target recorded for 2.5 s at 1 kHz, and what it measured itself."""
    python = python_for(request.param)
    out = tmp_path_factory.mktemp("gen") / "generators.spy"
    with running_target(python, "generators.py", "4") as target:
        result = spyrec("-o", out, "-p", target.pid, "-d", "2.5", "-r", "1000")
        assert result.returncode == 0, result.stderr
        target.process.wait(timeout=30)
        own = json.loads(target.process.stdout.read().decode().strip().splitlines()[-1])
    stacks = Stacks(load(out))
    stacks.path = str(out)
    return request.param, target, own, stacks


def busy_stacks(stacks):
    rec = stacks.rec
    busy = (rec.samples["flags"] & SampleFlag.IDLE) == 0
    return [stacks.stack(s) for s in rec.samples["stack"][busy].tolist()]


def test_every_stack_is_rooted_at_the_module(generators_recording):
    label, target, _, stacks = generators_recording
    samples = busy_stacks(stacks)
    assert len(samples) > 1500, label
    script = os.path.basename("generators.py")
    roots = Counter(stack[-1][:2] if stack else ("<no Python frames>", "") for stack in samples)
    rooted = roots[("<module>", script)] / len(samples)
    assert rooted >= ROOTED, (label, rooted, roots.most_common(5))
    torn = int(((stacks.rec.samples["flags"] & SampleFlag.TORN) != 0).sum())
    assert torn <= 0.01 * len(samples), (label, torn)


def test_each_phase_total_matches_the_targets_own_clock(generators_recording):
    """Each phase's total share, as spyanalyze weighs samples, within 2 points of the target's
    own clock (a sample stands for the ticks until the next one: see sample_weights)."""
    label, _, own, stacks = generators_recording
    table = spyanalyze.load(stacks.path).filter(idle="exclude").by_function()
    shares = table.groupby("qualname")["total_share"].sum()
    for phase, share in own["shares"].items():
        assert abs(shares.get(phase, 0.0) - share) <= TOLERANCE, (label, phase, shares.get(phase), share)


def test_generator_frames_sit_under_their_consumers(generators_recording):
    """The nested generators appear under each phase that runs them, never at the root."""
    label, _, own, stacks = generators_recording
    callers = Counter()
    for stack in busy_stacks(stacks):
        names = [frame[0] for frame in stack]
        if "numbers" in names:
            below = names[names.index("numbers") + 1:]
            callers[next((n for n in below if n in own["shares"]), None)] += 1
    assert callers[None] <= 0.01 * sum(callers.values()), (label, callers)
    for phase in ("via_list", "via_sum", "via_join", "via_for"):
        assert callers[phase] > 20, (label, callers)
