"""spyanalyze on real recordings: spyrec records tests/targets/split.py, whose own CPU clock
says how it split its time between heavy() and light(); the analyser must find that split,
diff a 75/25 run against a 50/50 one, filter by real threads, and export what it recorded.

These run the recorder (a few seconds each) and are skipped, saying why, when
``python -m spyrec`` is not available or cannot attach to its child.
"""

import io
import json
from collections import Counter

import jsonschema
import pytest
from click.testing import CliRunner

import spyanalyze
from spyanalyze import filters
from spyanalyze.cli import GATE_FAILED, main
from spyanalyze.diff import diff
from spyanalyze.export import collapsed, speedscope

from test_analyze_support import SCHEMA, record_split

SECONDS = 2.0
RATE = 200


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, split_with_sleeper):
    """(path, recording, the target's own measurement) for a 75/25 run (with a sleeper thread:
    the one test_analyze_plot reads too) and a 50/50 run."""
    runs = {0.75: split_with_sleeper,
            0.5: record_split(tmp_path_factory.mktemp("real"), 0.5, SECONDS, RATE)}
    return {share: (path, spyanalyze.load(path), measured) for share, (path, measured) in runs.items()}


def main_thread(rec):
    """The target's main thread: its native tid is the process id."""
    return filters.threads(rec, str(rec.header["pid"]))


def target_functions(table):
    """The rows of split.py's own functions (``main`` also names a function of ``site``)."""
    return table[table["module"].str.endswith("split.py")].set_index("qualname")


def heavy_share(rec):
    """heavy's share of the time main() spent in heavy or light, from the samples."""
    table = target_functions(main_thread(rec).by_function())
    heavy, light = table.loc["heavy", "total_samples"], table.loc["light", "total_samples"]
    return heavy / (heavy + light), heavy + light


@pytest.mark.parametrize("share", [0.75, 0.5])
def test_the_sampled_split_matches_the_targets_own_clock(recorded, share):
    path, rec, measured = recorded[share]
    sampled, n = heavy_share(rec)
    assert measured["heavy_share"] == pytest.approx(share, abs=0.02)
    # 4 binomial standard errors, widened by a design effect of 4 for autocorrelated samples
    tolerance = 4 * (share * (1 - share) / n * 4) ** 0.5
    assert sampled == pytest.approx(measured["heavy_share"], abs=tolerance)
    assert n >= 0.5 * SECONDS * RATE


def test_diff_of_75_25_against_50_50_finds_the_change(recorded):
    a = filters.idle(main_thread(recorded[0.75][1]), False)
    b = filters.idle(main_thread(recorded[0.5][1]), False)
    table = target_functions(diff(a, b))
    # heavy drops by about 25 points of the main thread's time, light grows as much
    for name, change in (("heavy", -0.25), ("light", +0.25)):
        row = table.loc[name]
        assert row["total_change"] == pytest.approx(change, abs=0.1), row
        assert row["total_significant"], row
    # main() runs all the time in both: no change
    assert not table.loc["main", "total_significant"]


def test_gate_on_real_recordings(recorded):
    a, b = str(recorded[0.5][0]), str(recorded[0.75][0])
    # the main thread's busy samples (idle ones are left out by default): on a loaded machine
    # the sleeper waits for the GIL and is not idle, which would dilute every share
    only_main = ["--thread", "MainThread"]
    grew = CliRunner().invoke(main, ["diff", a, b, *only_main, "--fail-if", "heavy:+10%"])
    assert grew.exit_code == GATE_FAILED, grew.output
    assert CliRunner().invoke(main, ["diff", a, b, *only_main, "--fail-if", "heavy:+40%"]).exit_code == 0
    assert CliRunner().invoke(main, ["diff", b, a, *only_main, "--fail-if", "heavy:+1%"]).exit_code == 0


def test_filters_on_real_threads(recorded):
    rec = recorded[0.75][1]
    tids = rec.samples.groupby("tid").size()
    assert len(tids) == 2                                # MainThread and the sleeper
    sleeper_tid = int([t for t in tids.index if t != rec.header["pid"]][0])
    sleeper = filters.threads(rec, str(sleeper_tid))
    assert set(sleeper.samples["tid"]) == {sleeper_tid}
    assert sleeper.samples["idle"].mean() > 0.5          # it waits (on a busy machine, for the GIL too)
    assert "nap" in set(sleeper.by_function()["qualname"])
    busy = filters.idle(rec, False)
    assert busy.samples["tid"].value_counts().idxmax() == rec.header["pid"]
    focused = filters.focus(rec, "heavy")
    assert set(focused.by_function()["qualname"]) >= {"heavy"}
    assert "main" not in set(focused.by_function()["qualname"])


def test_filter_by_real_thread_name(recorded):
    rec = recorded[0.75][1]
    names = set(rec.threads["name"].dropna())
    if "sleeper" not in names:
        pytest.skip("the recorder does not record thread names yet (THREAD records have name=None)")
    sleeper = filters.threads(rec, "sleep*")
    assert sleeper.samples["thread"].unique().tolist() == ["sleeper"]
    assert set(filters.threads(rec, "MainThread").samples["tid"]) == {rec.header["pid"]}


def test_exports_parse_back_to_the_samples(recorded):
    rec = recorded[0.75][1]
    # speedscope: valid against the published schema; per thread, the sample weights add up
    # to the sampling ticks the thread's samples stand for, each weight rounded to 3 decimals
    out = io.StringIO()
    speedscope.write(rec, out, weight="samples")
    document = json.loads(out.getvalue())
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    ticks = rec.samples.groupby("tid")["ticks"].sum()
    rounding = 0.0005 * len(rec.samples)
    assert sorted(sum(p["weights"]) for p in document["profiles"]) == \
        pytest.approx(sorted(ticks.tolist()), abs=rounding)
    frames = document["shared"]["frames"]
    heavy = sum(w for p in document["profiles"] for s, w in zip(p["samples"], p["weights"])
                if any(frames[i]["name"] == "heavy" for i in s))
    table = target_functions(rec.by_function())
    assert abs(heavy - table.loc["heavy", "total_samples"]) <= 0.5
    # collapsed: one line per stack, root first, counts add up to the samples
    out = io.StringIO()
    collapsed.write(rec, out)
    lines = Counter()
    for line in out.getvalue().splitlines():
        stack, count = line.rsplit(" ", 1)
        lines[stack] += int(count)
    assert abs(sum(lines.values()) - rec.samples["ticks"].sum()) <= len(lines) / 2
    heavy_lines = [c for s, c in lines.items() if ";heavy (%s:" % table.loc["heavy", "module"] in s]
    # each line's count is its ticks rounded
    assert abs(sum(heavy_lines) - table.loc["heavy", "total_samples"]) <= 0.5 + len(heavy_lines) / 2
    # root first: <module>, main, heavy; but a torn sample keeps the part of its stack that
    # could be read (flagged torn, exported as it is)
    cut = Counter()
    for stack in (s for s in lines if ";heavy (" in s):
        frames = stack.split(";")
        if not (frames[0].startswith("<module> (") and frames[1].startswith("main (")
                and frames[2].startswith("heavy (")):
            cut[stack] = lines[stack]
    torn_ticks = float(rec.samples["ticks"][rec.samples["torn"]].sum())
    assert sum(cut.values()) <= torn_ticks + len(cut) / 2, (cut, torn_ticks)


def test_timeline_accounts_for_the_targets_cpu(recorded):
    rec, measured = recorded[0.5][1], recorded[0.5][2]
    timeline = rec.timeline("250ms")
    # the CPU the samples carry adds up to what the target measured on its own clock (plus
    # start-up), and one spinning thread never uses more than one core
    assert timeline["cpu"].sum() / 1e9 == pytest.approx(measured["cpu"], abs=0.3)
    assert timeline["cpu_use"].max() <= 1.3
    assert (timeline["rss"] > 1_000_000).all()
