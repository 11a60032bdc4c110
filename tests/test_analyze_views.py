"""Derived views: by function, line, file and thread, and the timeline."""

import numpy as np
import pytest

import spyanalyze
from spyanalyze import views

from test_analyze_support import MAIN, RecordingBuilder, app_recording

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed


@pytest.fixture
def app(tmp_path):
    return spyanalyze.load(app_recording(tmp_path / "app.spy"))


def test_by_function_counts_self_and_total_samples(app):
    # GIVEN MainThread: parse->json on even ticks, query on odd; worker in numpy; idler sleeping
    table = app.by_function().set_index("qualname")
    # THEN self samples go to the innermost frame and total to every function on the stack
    assert table.loc["JSONDecoder.decode", "self_samples"] == 100
    assert table.loc["Handler.parse", "self_samples"] == 0
    assert table.loc["Handler.parse", "total_samples"] == 100
    assert table.loc["Handler.handle", "total_samples"] == 200
    assert table.loc["Thread.run", "total_samples"] == 400          # worker + idler
    assert table.loc["query", "self_share"] == pytest.approx(100 / 600)
    assert table.loc["run", "total_share"] == pytest.approx(200 / 600)
    assert table["self_samples"].sum() == 600                       # every sample has one leaf
    assert table.loc["Handler.parse", "module"] == "handlers.py"
    assert table.loc["Handler.parse", "line"] == 20


def test_time_weights_are_nanoseconds_and_shares_follow_the_chosen_weight(app):
    table = app.by_function(weight="cpu").set_index("qualname")
    # the worker uses half a CPU, MainThread a whole one, the idler none: 3 s of CPU in all
    assert table.loc["dot", "self_cpu"] == 1_000_000_000
    assert table.loc["dot", "self_share"] == pytest.approx(1 / 3)
    assert table.loc["wait_for_jobs", "self_share"] == 0
    assert table.loc["wait_for_jobs", "self_wall"] == 2_000_000_000


def test_recursion_counts_once_in_total(tmp_path):
    # GIVEN a recursive function three levels deep in every sample
    builder = RecordingBuilder().thread(1, "MainThread")
    fib = ("/p/fib.py", "fib", 3)
    for i in range(10):
        builder.sample(i * 10_000_000, 1, (MAIN, fib, fib, fib))
    rec = spyanalyze.load(builder.write(tmp_path / "fib.spy"))
    table = rec.by_function().set_index("qualname")
    # THEN fib's total is the number of samples, not three times it
    assert table.loc["fib", "total_samples"] == 10
    assert table.loc["fib", "total_share"] == 1.0


def test_by_line_and_by_file(app):
    lines = app.by_line().set_index(["qualname", "line"])
    assert lines.loc[("JSONDecoder.decode", 337), "self_samples"] == 100
    files = app.by_file().set_index("module")
    assert files.loc["handlers.py", "total_samples"] == 200
    assert files.loc["worker.py", "self_samples"] == 200             # wait_for_jobs
    assert files.loc["worker.py", "total_samples"] == 400


def test_by_thread(app):
    table = app.by_thread().set_index("thread")
    assert table.loc["MainThread", "samples"] == 200
    assert table.loc["worker", "cpu"] == 1_000_000_000                 # ns, as in every table
    assert table.loc["worker", "cpu_use"] == pytest.approx(0.5)
    assert table.loc["worker", "last"] - table.loc["worker", "first"] == 199 * 10_000_000
    assert table.loc["idler", "idle_share"] == 1.0
    assert table.loc["MainThread", "gil_share"] == 0.5


def test_timeline_resamples_cpu_and_memory(app):
    table = app.timeline("500ms")
    assert len(table) == 4
    assert table["samples"].tolist() == [150] * 4
    assert table["active"].tolist() == [100] * 4
    assert table["threads"].tolist() == [3] * 4
    # 1 + 0.5 cores busy; a sample stands for its thread's CPU time until its next sample, and
    # the built file gives each thread's first sample CPU time of its own (the recorder writes
    # 0 there): one interval of each running thread moves from the last bucket to the first
    assert table["cpu_use"].tolist() == pytest.approx([1.53, 1.5, 1.5, 1.47])
    assert table["rss"].iloc[0] == 50_000_000 + 49 * 1000               # largest RSS in the bucket
    assert str(table.index.tz) == "UTC"


def test_timeline_fills_gaps_and_sums_rss_over_processes(tmp_path):
    builder = RecordingBuilder(interval_ns=100_000_000)
    builder.thread(1, "a").thread(2, "b", pid=5)
    builder.sample(0, 1, (MAIN,), rss=100).sample(0, 2, (MAIN,), pid=5, rss=10)
    builder.sample(2_000_000_000, 1, (MAIN,), rss=300)
    table = spyanalyze.load(builder.write(tmp_path / "gap.spy")).timeline("1s")
    assert table["samples"].tolist() == [2, 0, 1]
    assert table["rss"].tolist() == [110, 110, 300]


def test_views_use_per_stack_counts(app, monkeypatch):
    # The views aggregate per distinct stack: feeding them a million samples over the same four
    # stacks must cost no more Python work than four stacks.
    repeated = np.tile(np.arange(len(app.samples)), 2000)
    big = app.replace(samples=app.samples.iloc[repeated].reset_index(drop=True))
    table = views.by_function(big).set_index("qualname")
    assert table.loc["query", "self_samples"] == 100 * 2000


def test_summary_reports_provenance_and_health(app):
    facts = views.summary(app)
    assert facts["samples"] == 600 and facts["threads"] == 3 and facts["processes"] == 1
    assert facts["rate_requested"] == pytest.approx(100)
    # each thread was sampled every 10 ms all its life (the builder gives every sample a time of
    # its own, as the recorder does: a round's samples differ); no thread has the process id
    # as its tid
    assert facts["rate_thread_median"] == pytest.approx(100) and facts["rate_threads"] == 3
    assert facts["rate_rounds"] == pytest.approx(100)
    assert facts["rate_main_thread"] is None
    assert facts["complete"] and facts["trailer"]["samples"] == 600
    assert facts["python"] == "3.11.7"



def test_summary_warns_about_an_unhealthy_recorder(tmp_path):
    # GIVEN a recorder that failed 5% of its reads and was late on 20% of its ticks
    builder = RecordingBuilder().thread(1, "MainThread")
    for i in range(100):
        builder.sample(i * 10_000_000, 1, (MAIN,))
    builder.trailer.update(errors=5, late=20, ticks=100)
    facts = views.summary(spyanalyze.load(builder.write(tmp_path / "sick.spy")))
    # THEN info says so
    assert any("5.0% of stack reads failed" in w for w in facts["warnings"])  # of the samples
    assert any("20.0% of sampling ticks were late" in w for w in facts["warnings"])


def test_summary_warns_when_many_stacks_were_read_again_later(tmp_path):
    """A 1.4 trailer counts the stacks read from outside and those read again after a torn
    read; past a tenth of them (and a hundredth of the samples), info says their shares lean;
    a 1.3 file without the counts, nothing."""
    def facts(name, **trailer):
        builder = RecordingBuilder().thread(1, "MainThread")
        for i in range(100):
            builder.sample(i * 10_000_000, 1, (MAIN,))
        builder.trailer.update(trailer)
        return views.summary(spyanalyze.load(builder.write(tmp_path / name)))
    assert any(w.startswith("25.0% of the stacks read from the program's memory tore")
               for w in facts("many.spy", walked=80, reread=20)["warnings"])
    assert facts("few.spy", walked=80, reread=8)["warnings"] == []
    assert facts("rare.spy", walked=5, reread=1)["warnings"] == []  # (1 of 100 samples)
    assert facts("older.spy")["warnings"] == []


def test_summary_of_a_healthy_recording_has_no_warnings(app):
    assert views.summary(app)["warnings"] == []
