"""Filters: pure Recording -> Recording functions."""

import pandas as pd
import pytest

import spyanalyze
from spyanalyze import filters
from spyanalyze.errors import EmptyResult, UnknownThread

from test_analyze_support import MAIN, RecordingBuilder, app_recording

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed


@pytest.fixture
def app(tmp_path):
    return spyanalyze.load(app_recording(tmp_path / "app.spy"))


def snapshot(rec):
    return rec.samples.copy(), rec.frames.copy(), rec.stacks.copy()


def test_filters_never_mutate_their_input(app):
    # GIVEN a recording and a copy of its tables
    before = snapshot(app)
    # WHEN every kind of filter runs on it
    results = [filters.threads(app, "worker"), filters.window(app, 0.5, 1), filters.idle(app, False),
               filters.gil(app, True), filters.include(app, "query"), filters.exclude(app, "stdlib"),
               filters.focus(app, "Handler.handle"), filters.prune(app, "stdlib"),
               filters.processes(app, [4242])]
    # THEN the input is unchanged and each result is a new Recording that says how it was made
    for table, original in zip(snapshot(app), before):
        pd.testing.assert_frame_equal(table, original)
    assert all(r is not app and len(r.steps) == 1 for r in results)


def test_thread_by_name_glob_and_by_id(app):
    assert set(filters.threads(app, "work*").samples["thread"]) == {"worker"}
    assert set(filters.threads(app, ["101", "idler"]).samples["tid"]) == {101, 103}
    assert set(filters.threads(app, str(102 * 16)).samples["tid"]) == {102}     # Python thread id


def test_unknown_thread_names_the_threads_there_are(app):
    with pytest.raises(UnknownThread, match=r"no thread matches 'nope'.*MainThread \(tid 101\)"):
        filters.threads(app, "nope")


def test_time_window_in_seconds_or_with_units(app):
    kept = filters.window(app, "500ms", 1.0)
    t = kept.samples["t"]
    assert t.min() >= 500_000_000 and t.max() < 1_000_000_000
    assert len(kept) == 150
    assert len(filters.window(app, start="1.5s")) == 150
    with pytest.raises(ValueError, match="not a time"):
        filters.window(app, "soon")


def test_idle_and_gil(app):
    assert not filters.idle(app, False).samples["idle"].any()
    assert filters.idle(app, True).samples["thread"].unique().tolist() == ["idler"]
    held = filters.gil(app, True)
    assert held.samples["gil"].all() and len(held) == 200


def test_include_and_exclude_by_function_file_and_kind(app):
    assert len(filters.include(app, "Handler.*")) == 200
    assert len(filters.include(app, "handlers.py:Handler.parse")) == 100
    assert len(filters.include(app, "file:db.py")) == 100
    assert len(filters.include(app, "file:*/app/db.py")) == 100
    assert len(filters.include(app, "site-packages")) == 200
    assert len(filters.exclude(app, "stdlib")) == 100         # drops json users and both threads
    with pytest.raises(ValueError, match="unknown frame kind"):
        filters.include(app, "kind:vendored")


def test_focus_cuts_stacks_to_start_at_the_match(app):
    focused = filters.focus(app, "Handler.handle")
    table = focused.by_function().set_index("qualname")
    assert len(focused) == 200
    assert "run" not in table.index and "<module>" not in table.index
    assert table.loc["Handler.handle", "total_share"] == 1.0
    roots = {focused.frames.loc[s[0], "qualname"] for s in focused.stacks["frames"]}
    assert roots == {"Handler.handle"}


def test_prune_hides_frames_and_charges_their_caller(app):
    pruned = filters.prune(app, "stdlib")
    table = pruned.by_function().set_index("qualname")
    assert "JSONDecoder.decode" not in table.index
    assert table.loc["Handler.parse", "self_samples"] == 100      # json's time goes to its caller
    assert len(pruned) == len(app)


def test_prune_of_a_whole_stack_leaves_an_empty_stack_that_still_counts(tmp_path):
    builder = RecordingBuilder().thread(1, "MainThread")
    builder.sample(0, 1, (("/usr/lib/python3.11/threading.py", "Thread.run", 1),))
    builder.sample(10_000_000, 1, (MAIN,))
    pruned = filters.prune(spyanalyze.load(builder.write(tmp_path / "x.spy")), "stdlib")
    assert len(pruned) == 2
    assert pruned.by_function().set_index("qualname").loc["<module>", "self_share"] == 0.5


def test_apply_chains_filters_and_reports_the_step_that_emptied_the_result(app):
    kept = filters.apply(app, threads="MainThread", idle="exclude", include="query", prune=["stdlib"])
    assert len(kept) == 100
    assert kept.steps == ("thread MainThread", "not idle", "include query", "prune stdlib")
    with pytest.raises(EmptyResult, match=r"after filtering by not idle \(200 samples before it\)"):
        filters.apply(app, threads="idler", idle="exclude", allow_empty=False)
    assert filters.apply(app, threads="idler", idle=False).empty


def test_recording_filter_method(app):
    assert len(app.filter(gil=True, start=0, end=1)) == 100
