"""spyanalyze on recordings of real programs under CPython 3.12, whose recordings hold what a
real program gives: frames whose instruction has no line (0), the interpreter's own shim frames
(``<interpreter trampoline>`` in ``<shim>``), samples without Python frames, and hundreds of
short-lived threads.  Targets: tests/targets/inits.py (objects built through ``__init__`` and
closures in a loop) and tests/targets/churn.py (threads that keep starting and ending).
"""

import io
import json
from collections import Counter

import pandas as pd
import pytest
from click.testing import CliRunner

import spyanalyze
from spyanalyze import views
from spyanalyze.cli import main
from spyanalyze.diff import diff
from spyanalyze.export import collapsed, speedscope
from spyanalyze.frames import NO_PYTHON_FRAMES, SHIM_FILE, interpreter_internal
import spyformat

from pythons import python_for, target_path
from test_analyze_support import record

SECONDS = 3
RATE = 1000
NO_FRAMES = (NO_PYTHON_FRAMES, NO_PYTHON_FRAMES, 0)


@pytest.fixture(scope="module")
def inits(tmp_path_factory):
    out = tmp_path_factory.mktemp("inits") / "inits.spy"
    # read from outside, the stacks often start at 3.12's entry frames (shims), which the
    # analyser must hide; stacks copied at interrupts hardly ever do
    record(out, [python_for("3.12"), target_path("inits.py"), SECONDS], SECONDS, RATE,
           options=("--no-bpf",))
    return out


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    out = tmp_path_factory.mktemp("churn") / "churn.spy"
    record(out, [python_for("3.12"), target_path("churn.py"), SECONDS, 8], SECONDS, RATE)
    return out


def recorded_stacks(path):
    """Every sample's stack as the file holds it: a tuple of (file, qualname, line), root first."""
    stream = spyformat.open_source(str(path))
    try:
        data = spyformat.read_recording(stream)
    finally:
        stream.close()
    strings, frames = data.strings, data.frames
    texts = [(strings[frames["file"][f]], strings[frames["qualname"][f]], int(frames["line"][f]))
             for f in range(len(frames["file"]))]
    return [tuple(texts[f] for f in data.stacks[sid]) for sid in data.samples["stack"].tolist()]


def loaded_stacks(rec):
    frames = list(zip(rec.frames["file"], rec.frames["qualname"], rec.frames["line"].tolist()))
    tuples = rec.stack_table.tuples
    return [tuple(frames[f] for f in tuples[sid]) for sid in rec.samples["stack"].tolist()]


def without_shims(stack):
    return tuple(frame for frame in stack if frame[0] != SHIM_FILE) or (NO_FRAMES,)


def export_text(rec, module, **options):
    out = io.StringIO()
    module.write(rec, out, **options)
    return out.getvalue()


# ------------------------------------------------------------------------------------------
# Labels


def test_a_function_is_labelled_with_its_lowest_sampled_line_never_0(inits):
    rec = spyanalyze.load(inits)
    frames = rec.frames
    # the recording holds line 0 (an instruction without a line: the generated ``spin``'s second
    # statement) in functions that were also sampled on real lines
    zero = set(frames.loc[frames["line"] == 0, "qualname"]) - {NO_PYTHON_FRAMES}
    assert zero & set(frames.loc[frames["line"] > 0, "qualname"])
    table = rec.by_function()
    for row in table.itertuples():
        lines = frames.loc[(frames["module"] == row.module) & (frames["qualname"] == row.qualname), "line"]
        assert row.line == (lines[lines > 0].min() if (lines > 0).any() else 0), row
    top = CliRunner().invoke(main, ["top", str(inits), "--idle", "include", "-n", "0"])
    assert top.exit_code == 0, top.output
    assert ":0)" not in top.output
    hot = table[table["qualname"].isin(zero) & (table["line"] > 0)].iloc[0]
    assert "%s (%s:%d)" % (hot.qualname, hot.module, hot.line) in top.output
    assert ":0)" not in export_text(rec, collapsed)
    document = json.loads(export_text(rec, speedscope))
    assert all(frame.get("line", 1) > 0 for frame in document["shared"]["frames"])


# ------------------------------------------------------------------------------------------
# The interpreter's shim frames


def test_shim_frames_are_hidden_and_their_time_goes_to_the_python_caller(inits, tmp_path):
    recorded = recorded_stacks(inits)
    assert any(frame[0] == SHIM_FILE for stack in recorded for frame in stack)   # 3.12 records them
    rec = spyanalyze.load(inits)
    assert not (rec.frames["file"] == SHIM_FILE).any()
    # every sample keeps its place: its stack is the recorded one without the shims
    assert Counter(loaded_stacks(rec)) == Counter(map(without_shims, recorded))
    names = set(rec.by_function()["qualname"]) | set(rec.by_line()["qualname"])
    assert "<interpreter trampoline>" not in names
    assert SHIM_FILE not in set(rec.by_file()["module"])
    assert SHIM_FILE not in export_text(rec, collapsed) and SHIM_FILE not in export_text(rec, speedscope)
    assert rec.filter(include="<interpreter trampoline>").empty
    # the class call's __init__ shows right under the function that made the object
    assert any(stack[-2:] == (("build", "Point.__init__")) for stack in
               (tuple(f[1] for f in s) for s in loaded_stacks(rec)))
    # written back (spyanalyze filter), the recording reads the same
    with open(tmp_path / "again.spy", "wb") as out:
        spyanalyze.write(rec, out)
    assert Counter(loaded_stacks(spyanalyze.load(tmp_path / "again.spy"))) == Counter(loaded_stacks(rec))


def test_the_rule_names_each_interpreters_shims_and_no_program_code():
    files = ["<shim>", "/x/y.py", "__init__", "/app/inits.py", "<frozen abc>"]
    names = ["<interpreter trampoline>", "<interpreter trampoline>", "__init__", "__init__", "__new__"]
    # 3.13's _Py_InitCleanup is a code object named __init__ in "file" __init__, with no line
    assert interpreter_internal(files, names, [0, 0, 0, 0, 0]).tolist() == [True, True, True, False, False]
    assert not interpreter_internal(["__init__"], ["__init__"], [3]).any()


# ------------------------------------------------------------------------------------------
# Samples without Python frames


def test_samples_without_python_frames_are_one_row_and_one_root_everywhere(churn):
    count = sum(1 for stack in recorded_stacks(churn) if without_shims(stack) == (NO_FRAMES,))
    assert count > 0                              # threads just started or ending
    rec = spyanalyze.load(churn)
    leaves = rec.leaves()["qualname"] == NO_PYTHON_FRAMES
    assert leaves.sum() == count
    # weighed as samples are: the sampling ticks each stands for (see sample_weights)
    ticks = rec.samples["ticks"].to_numpy()[leaves.to_numpy()].sum()
    expected = round(ticks)
    functions = rec.by_function().set_index("qualname")
    assert functions.loc[NO_PYTHON_FRAMES, "self_samples"] == expected
    assert functions.loc[NO_PYTHON_FRAMES, "total_samples"] == expected
    assert rec.by_file().set_index("module").loc[NO_PYTHON_FRAMES, "self_samples"] == expected
    lines = dict(line.rsplit(" ", 1) for line in export_text(rec, collapsed).splitlines())
    assert int(lines[NO_PYTHON_FRAMES]) == expected
    document = json.loads(export_text(rec, speedscope, weight="samples"))
    index = [f["name"] for f in document["shared"]["frames"]].index(NO_PYTHON_FRAMES)
    assert sum(w for p in document["profiles"] for s, w in zip(p["samples"], p["weights"])
               if s == [index]) == pytest.approx(ticks, abs=0.01)
    compared = diff(rec, rec).set_index("qualname")
    assert compared.loc[NO_PYTHON_FRAMES, "total_a"] == pytest.approx(ticks / rec.samples["ticks"].sum())
    top = CliRunner().invoke(main, ["top", str(churn), "--idle", "include", "-n", "0"])
    assert "%d  %s" % (expected, NO_PYTHON_FRAMES) in top.output


# ------------------------------------------------------------------------------------------
# The rate headline


def test_info_reports_rounds_and_per_thread_rates_not_a_mean_over_short_threads(churn):
    rec = spyanalyze.load(churn)
    facts = views.summary(rec)
    samples = rec.samples
    assert samples["tid"].nunique() > 50                       # many short-lived threads
    assert facts["rate_rounds"] == pytest.approx(samples.groupby("tid").size().max() / rec.duration)
    trailer = rec.trailer
    assert facts["rate_rounds"] == pytest.approx(trailer["ticks"] / (trailer["duration_ns"] / 1e9), rel=0.1)
    # the main thread lives through the recording: it is sampled in every round
    assert facts["rate_main_thread"] == pytest.approx(facts["rate_rounds"], rel=0.1)
    assert facts["rate_thread_median"] > 0.5 * facts["rate_rounds"]
    mean_over_threads = len(samples) / samples["tid"].nunique() / rec.duration
    assert mean_over_threads < 0.2 * facts["rate_rounds"]     # what the headline must not be
    info = CliRunner().invoke(main, ["info", str(churn)])
    assert info.exit_code == 0, info.output
    assert "%.0f Hz achieved in rounds" % facts["rate_rounds"] in info.output
    assert "main thread %.0f Hz" % facts["rate_main_thread"] in info.output
    assert "median %.0f Hz" % facts["rate_thread_median"] in info.output


# ------------------------------------------------------------------------------------------
# pandas


def test_samples_resample_by_time_and_every_table_counts_time_in_ns(churn):
    rec = spyanalyze.load(churn)
    samples = rec.samples
    assert isinstance(samples.index, pd.DatetimeIndex) and str(samples.index.tz) == "UTC"
    assert (samples.index == samples["timestamp"]).all()
    per_bucket = samples.resample("100ms")["cpu"].sum()
    cpu = samples["cpu"].sum()
    assert per_bucket.sum() == cpu
    assert rec.by_thread()["cpu"].sum() == cpu
    assert rec.timeline("100ms")["cpu"].sum() == cpu
    assert rec.by_function(weight="cpu")["self_cpu"].sum() == pytest.approx(cpu, abs=len(rec))


def test_filter_takes_the_timelines_timestamps_as_well_as_offsets(churn):
    rec = spyanalyze.load(churn)
    timeline = rec.timeline("500ms")
    start, end = timeline.index[1], timeline.index[3]
    part = rec.filter(start=start, end=end)
    inside = (rec.samples.index >= start) & (rec.samples.index < end)
    assert 0 < len(part) == inside.sum()
    assert part.samples.index.min() >= start and part.samples.index.max() < end
    origin = pd.Timestamp(rec.header["start_wall_ns"], unit="ns", tz="UTC")
    offsets = rec.filter(start=(start - origin).value / 1e9, end=(end - origin).value / 1e9)
    assert offsets.samples.index.equals(part.samples.index)
    naive = rec.filter(start=start.tz_localize(None), end=end.tz_localize(None))
    assert naive.samples.index.equals(part.samples.index)
    assert part.samples.resample("100ms")["stack"].count().sum() == len(part)


def test_leaves_give_each_samples_function_file_and_line(inits):
    rec = spyanalyze.load(inits)
    leaves = rec.leaves()
    assert leaves.index.equals(rec.samples.index)
    chained = rec.frames.loc[rec.stacks["leaf"].to_numpy()[rec.samples["stack"].to_numpy()]]
    assert leaves["qualname"].tolist() == chained["qualname"].tolist()
    assert leaves["line"].tolist() == chained["line"].tolist()
    assert leaves["module"].tolist() == chained["module"].tolist()
    assert {"Point.__init__", "build"} <= set(leaves["qualname"])
    busy = leaves[~rec.samples["idle"]].groupby("qualname").size()
    assert busy.sum() == (~rec.samples["idle"]).sum()
