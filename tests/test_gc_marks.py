"""Samples taken while the target's garbage collector runs carry a ``<GC>`` frame, innermost,
on every supported CPython.

The collecting target (tests/targets/collecting.py) calls ``gc.collect()`` between stretches of
arithmetic, times each call itself on the monotonic clock the recorder stamps samples with, and
runs a second thread that never collects.  Each sample of the main thread must be
marked exactly when the target was collecting, the collector's callers kept below the mark, and
no sample of the other thread marked.
"""

import bisect
import json
import subprocess
import sys
from collections import Counter

import pytest
from click.testing import CliRunner

import spyanalyze
from pythons import EVERY_VERSION, python_for, running_target, stop_target
from spyanalyze.cli import main as spyanalyze_main
from spyformat import GC_FRAME, SampleFlag
from spyrec.stackcapture import MIN_PERIOD_NS
from test_record import Stacks, load, spyrec

#: Samples this close to a collection's start or end (ns) are not judged: the collector's flag
#: and the thread's stack are read microseconds apart, and the target stamps the call around
#: the collection.
EDGE_NS = 200_000
#: Nor, as root, those this close after one: a sample stamped at its round's moment shows a
#: running thread as copied at its last timed interrupt, up to a copy period before
#: (spyrec.stackcapture, ``StackCapture.at``).
COPY_LAG = MIN_PERIOD_NS + EDGE_NS
#: Share of the judged samples whose mark may disagree with the target's own timing.
WRONG_MARKS = 0.01
#: How far (in share points) the marked share may be from the share of time the target spent
#: collecting while it was recorded.  The marked share runs 1-3 points low: a stack read while
#: a collection starts or ends is not marked (the flag is read before and after it), and there
#: are a thousand such ends in the recording.
TOLERANCE = 0.04
SPYREC = [sys.executable, "-m", "spyrec"]


@pytest.fixture(scope="module", params=EVERY_VERSION)
def collecting_recording(request, tmp_path_factory):
    """The collecting target recorded for 2.5 s at 1 kHz, and what it measured itself."""
    out = tmp_path_factory.mktemp("gc") / "collecting.spy"
    with running_target(python_for(request.param), "collecting.py", "3.5") as target:
        result = spyrec("-o", out, "-p", target.pid, "-d", "2.5", "-r", "1000")
        assert result.returncode == 0, result.stderr
        own = stop_target(target)
    stacks = Stacks(load(out))
    return request.param, target, own, stacks, out


def marked(stack):
    return bool(stack) and stack[0][0] == GC_FRAME


def main_thread_samples(target, stacks, holding_gil=False):
    """(absolute monotonic time, stack) of every sample of the target's main thread (only
    those that found it holding the GIL, with ``holding_gil``)."""
    rec = stacks.rec
    origin = rec.header["start_mono_ns"]
    chosen = rec.samples["tid"] == target.info["main"]["native_id"]
    if holding_gil:
        chosen &= (rec.samples["flags"] & SampleFlag.GIL) != 0
    return [(origin + t, stacks.stack(s)) for t, s in zip(rec.samples["t"][chosen].tolist(),
                                                         rec.samples["stack"][chosen].tolist())]


def test_each_sample_is_marked_when_the_target_was_collecting(collecting_recording):
    """Judged on the samples that found the main thread holding the GIL: one waiting for it
    between a collection and the end stamp is not collecting, yet inside the timed span."""
    label, target, own, stacks, _ = collecting_recording
    spans = own["collections"]
    starts = [start for start, _ in spans]
    judged, wrong = 0, Counter()
    for at, stack in main_thread_samples(target, stacks, holding_gil=True):
        i = bisect.bisect_right(starts, at) - 1
        inside = i >= 0 and spans[i][0] + EDGE_NS <= at < spans[i][1] - EDGE_NS
        near_edge = any(at - COPY_LAG < edge < at + EDGE_NS for j in (i, i + 1)
                        if 0 <= j < len(spans) for edge in spans[j])
        if near_edge:
            continue
        judged += 1
        if marked(stack) != inside:
            wrong["collecting, not marked" if inside else "marked, not collecting"] += 1
    assert judged > 800, (label, judged)
    assert sum(wrong.values()) <= WRONG_MARKS * judged, (label, judged, wrong)


def test_the_marked_share_is_the_share_of_time_spent_collecting(collecting_recording):
    label, target, own, stacks, _ = collecting_recording
    samples = main_thread_samples(target, stacks)
    first, last = samples[0][0], samples[-1][0]
    collecting = sum(max(0, min(end, last) - max(start, first)) for start, end in own["collections"])
    truth = collecting / (last - first)
    share = sum(marked(stack) for _, stack in samples) / len(samples)
    assert 0.2 < truth < 0.8, (label, truth)  # the target did what it is for
    assert share == pytest.approx(truth, abs=TOLERANCE), (label, share, truth)


def test_the_collectors_callers_stay_under_the_mark(collecting_recording):
    """Below the mark: ``collect_now``, ``main`` and ``<module>``: the whole stack."""
    label, target, _, stacks, _ = collecting_recording
    shapes = Counter()
    for _, stack in main_thread_samples(target, stacks):
        if marked(stack):
            names = [frame[0] for frame in stack[1:]]
            shapes[tuple(names)] += 1
    assert sum(shapes.values()) > 300, (label, shapes)
    whole = shapes[("collect_now", "main", "<module>")]
    assert whole >= 0.99 * sum(shapes.values()), (label, shapes.most_common(4))


def test_another_thread_is_never_marked(collecting_recording):
    label, target, _, stacks, _ = collecting_recording
    napper = stacks.of_thread(target.info["threads"]["napper"]["native_id"])
    assert len(napper) > 1000, (label, len(napper))
    assert not any(marked(stack) for stack in napper), label


def test_every_view_shows_the_collectors_time(collecting_recording):
    """``top`` lists the collector's time as a function labelled ``<GC>``, and the collapsed
    export ends those stacks with it."""
    label, _, _, stacks, path = collecting_recording
    expected = sum(marked(stacks.stack(s)) for s in stacks.rec.samples["stack"].tolist())
    rec = spyanalyze.load(path)
    in_gc = rec.leaves()["label"] == GC_FRAME
    assert in_gc.sum() == expected
    top = CliRunner().invoke(spyanalyze_main, ["top", str(path), "-n", "0", "--idle", "include"])
    assert top.exit_code == 0, top.output
    line = next(line for line in top.output.splitlines() if line.endswith("  " + GC_FRAME))
    # its self samples, in ticks (a round taken late counts for the rounds it stands for)
    assert int(line.split()[2]) == round(rec.samples["ticks"][in_gc].sum()), (label, line)
    collapsed = CliRunner().invoke(spyanalyze_main, ["export", str(path), "--format", "collapsed",
                                                     "--weight", "samples", "--idle", "include", "-o", "-"])
    assert collapsed.exit_code == 0, collapsed.output
    ticks = 0.0
    for text in collapsed.output.splitlines():
        frames, count = text.rsplit(" ", 1)
        frames = frames.split(";")
        assert GC_FRAME not in frames[:-1], text
        ticks += float(count) if frames[-1] == GC_FRAME else 0
    assert ticks == pytest.approx(rec.samples["ticks"][in_gc].sum(), abs=1), label


def test_where_says_which_thread_is_collecting():
    """``spyrec where`` reads each thread once: asked often enough, it finds the main thread
    collecting (about 40% of the time), says so, and lists its Python frames without the mark;
    the napper is never the one collecting."""
    with running_target(python_for("3.12"), "collecting.py", "20") as target:
        seen = []
        for _ in range(30):
            result = subprocess.run(SPYREC + ["where", "-p", str(target.pid), "--json"],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            threads = {t["tid"]: t for t in json.loads(result.stdout)["threads"]}
            main = threads[target.info["main"]["native_id"]]
            assert not threads[target.info["threads"]["napper"]["native_id"]]["gc"]
            assert all(frame["file"] != GC_FRAME for frame in main["frames"])
            seen.append(main["gc"])
            if main["gc"]:
                assert main["frames"][0]["name"] == "collect_now", main["frames"]
            if True in seen and False in seen:
                break
        assert True in seen and False in seen, seen
