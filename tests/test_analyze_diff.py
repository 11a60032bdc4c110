"""diff: shares, changes, the significance test, matching across checkouts, gates."""

import io

import numpy as np
import pytest

import spyanalyze
from spyanalyze import simulate
from spyanalyze.diff import (Gate, _holm, check_gates, diff, reconcile_modules, two_sided_p,
                             write_collapsed_diff)
from spyanalyze.errors import EmptyResult

from test_analyze_support import RecordingBuilder, app_recording

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

A = ("/src/app/work.py", "a", 10)
B = ("/src/app/work.py", "b", 20)
C = ("/src/app/work.py", "c", 30)
D = ("/src/app/work.py", "d", 40)


def markov_recording(path, seed, samples=4000, stay=0.95, weights=(0.4, 0.3, 0.2, 0.1), root="/src"):
    """A single thread whose leaf function follows a Markov chain: it keeps its function with
    probability ``stay`` (runs of ~1/(1-stay) samples, like real code), else draws afresh."""
    rng = np.random.default_rng(seed)
    fresh = rng.choice(4, size=samples, p=weights)
    keep = rng.random(samples) < stay
    current = fresh[0]
    choice = np.empty(samples, dtype=np.int64)
    for i in range(samples):
        current = current if keep[i] else fresh[i]
        choice[i] = current
    builder = RecordingBuilder(interval_ns=1_000_000).thread(1, "MainThread")
    main = (root + "/app/main.py", "<module>", 1)
    leaves = [(file.replace("/src", root, 1), name, line) for file, name, line in (A, B, C, D)]
    for i, c in enumerate(choice.tolist()):
        builder.sample(i * 1_000_000, 1, (main, leaves[c]))
    return spyanalyze.load(builder.write(path))


def test_holm_adjustment():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> 0.09 (monotone), 0.5*1=0.5
    assert _holm(p).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert _holm(np.array([0.9, 0.9])).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("t, df, p", [(2.0, 10, 0.0733880), (2.228139, 10, 0.05), (12.7062, 1, 0.05),
                                      (1.959964, float("inf"), 0.05), (0.0, 5, 1.0)])
def test_student_t_p_values(t, df, p):
    assert two_sided_p(t, df) == pytest.approx(p, abs=2e-6)


def test_diff_reports_shares_and_changes(tmp_path):
    # GIVEN MainThread parsing on half its ticks, then on a quarter, recorded at another rate
    # and length (the diff compares shares, so both are fine)
    a = spyanalyze.load(app_recording(tmp_path / "a.spy", seconds=2.0, parse_share=0.5))
    b = spyanalyze.load(app_recording(tmp_path / "b.spy", seconds=3.0, interval_ns=5_000_000,
                                      parse_share=0.25))
    # WHEN they are compared
    table = diff(a, b).set_index("qualname")
    # THEN shares are fractions of each recording's samples, and the change is their difference
    assert table.loc["Handler.parse", "total_a"] == pytest.approx(100 / 600)
    assert table.loc["Handler.parse", "total_b"] == pytest.approx(150 / 1800)
    assert table.loc["Handler.parse", "total_change"] == pytest.approx(150 / 1800 - 100 / 600)
    assert table.loc["Handler.parse", "count_a"] == 100
    assert table.loc["Handler.parse", "total_significant"]
    assert table.loc["Handler.handle", "self_change"] == pytest.approx(150 / 1800)   # every 4th tick
    # unchanged functions are not significant
    assert not table.loc["dot", "total_significant"]
    assert table.loc["dot", "total_p_adj"] == pytest.approx(1.0)
    assert table.attrs["n_a"] == 600 and table.attrs["n_b"] == 1800


def test_null_differences_are_rarely_significant_despite_autocorrelation(tmp_path):
    # GIVEN pairs of recordings of the same program (same shares), whose samples come in runs of
    # ~20 (autocorrelated, as real samples are)
    flagged, flagged_binomial = 0, 0
    trials = 40
    for trial in range(trials):
        samples = 4000 if trial % 2 else 400          # long enough for 20 runs, and short
        a = markov_recording(tmp_path / ("a%d.spy" % trial), seed=2 * trial, samples=samples)
        b = markov_recording(tmp_path / ("b%d.spy" % trial), seed=2 * trial + 1, samples=samples)
        # WHEN diffed with the batch-means variance, and with the textbook binomial one only
        flagged += diff(a, b)["total_significant"].any()
        flagged_binomial += diff(a, b, blocks=0)["total_significant"].any()
    # THEN ours keeps false alarms near alpha, while the independence assumption cries wolf
    assert flagged <= 0.15 * trials
    assert flagged_binomial >= 0.5 * trials


def test_design_effect_reflects_autocorrelation(tmp_path):
    # two runs of each program (a recording diffed against itself has no noise to measure)
    runs = [markov_recording(tmp_path / ("runs%d.spy" % i), seed=1 + i, stay=0.95) for i in range(2)]
    shuffled = [markov_recording(tmp_path / ("iid%d.spy" % i), seed=3 + i, stay=0.0) for i in range(2)]
    deff_runs = diff(*runs)["total_design_effect"].max()
    deff_iid = diff(*shuffled)["total_design_effect"].max()
    assert deff_runs > 5
    assert deff_iid < 3


def test_a_real_change_is_significant(tmp_path):
    # (stacks held for ~20 samples: 12,000 samples are worth a few hundred independent ones)
    a = markov_recording(tmp_path / "a.spy", seed=5, weights=(0.4, 0.3, 0.2, 0.1), samples=12000)
    b = markov_recording(tmp_path / "b.spy", seed=6, weights=(0.7, 0.1, 0.1, 0.1), samples=12000)
    table = diff(a, b).set_index("qualname")
    assert table.loc["a", "total_significant"] and table.loc["a", "total_change"] > 0.2
    assert table.loc["b", "total_significant"] and table.loc["b", "total_change"] < -0.1


def test_a_function_replaced_by_another_is_significant_both_ways(tmp_path):
    # GIVEN a program whose work went from old() to new(): each fills every sample of its
    # run but a start-up and a shutdown of their own lengths, so the runs' batches differ
    # only at their ends
    def run(path, work, seed, startup, shutdown, samples):
        rng = np.random.default_rng(seed)
        builder = RecordingBuilder().thread(7, "MainThread")
        for i in range(samples):
            if i < startup:
                frames = [C]
            elif i >= samples - shutdown:
                frames = [D]
            else:
                frames = [("/src/app/work.py", work, 5), (A, B)[rng.integers(2)]]
            builder.sample(i * 1_000_000, 7, frames)
        return spyanalyze.load(builder.write(tmp_path / path))
    before = run("before.spy", "old", 1, startup=100, shutdown=140, samples=3000)
    after = run("after.spy", "new", 2, startup=300, shutdown=40, samples=3800)
    # WHEN they are compared
    table = diff(before, after).set_index("qualname")
    # THEN the 92 points old() lost and the 91 new() took are both significant: a function
    # with no noise in most batches of either side is not left a single degree of freedom
    assert table.loc["old", "total_change"] < -0.9 and table.loc["new", "total_change"] > 0.9
    assert table.loc["old", "total_significant"] and table.loc["new", "total_significant"]
    assert check_gates(diff(before, after), ["new:+5%"])


def test_functions_match_across_checkouts_and_line_changes(tmp_path):
    # GIVEN the same program recorded from two checkouts; the second also has a tests/ file, so
    # its common source root is one level up, and its lines moved
    builder = RecordingBuilder().thread(1, "MainThread")
    for i in range(100):
        builder.sample(i * 10_000_000, 1, (("/home/a/proj/app/main.py", "<module>", 1),
                                           ("/home/a/proj/app/db.py", "query", 8 if i % 2 else 9)))
    a = spyanalyze.load(builder.write(tmp_path / "a.spy"))
    builder = RecordingBuilder().thread(7, "MainThread")
    for i in range(100):
        frames = (("/ci/build/proj/app/main.py", "<module>", 3), ("/ci/build/proj/app/db.py", "query", 12))
        if i % 4 == 0:
            frames = (("/ci/build/proj/tests/conftest.py", "<module>", 1),) + frames
        builder.sample(i * 10_000_000, 7, frames)
    b = spyanalyze.load(builder.write(tmp_path / "b.spy"))
    assert set(b.frames["module"]) == {"app/main.py", "app/db.py", "tests/conftest.py"}
    # WHEN they are compared
    table = diff(a, b).set_index(["module", "qualname"])
    # THEN query lines up as one function in both
    assert table.loc[("db.py", "query"), "total_a"] == 1.0
    assert table.loc[("db.py", "query"), "total_b"] == 1.0
    assert not table["total_significant"].loc[("db.py", "query")]


def test_reconcile_modules_only_pairs_unambiguous_suffixes():
    rename_a, rename_b = reconcile_modules(["db.py", "x/util.py", "json/decoder.py"],
                                           ["app/db.py", "a/util.py", "b/util.py", "json/decoder.py"])
    assert rename_b == {"app/db.py": "db.py"} and rename_a == {}


def test_gates_fail_only_on_significant_growth_beyond_the_threshold(tmp_path):
    a = markov_recording(tmp_path / "a.spy", seed=5, weights=(0.4, 0.3, 0.2, 0.1), samples=12000)
    b = markov_recording(tmp_path / "b.spy", seed=6, weights=(0.7, 0.1, 0.1, 0.1), samples=12000)
    table = diff(a, b)
    assert [g.text for g, _ in check_gates(table, ["a:+5%"])] == ["a:+5%"]
    assert check_gates(table, ["a:+60%"]) == []           # grew, but by less than 60 points
    assert check_gates(table, ["b:+5%"]) == []            # shrank
    assert [g.text for g, _ in check_gates(table, ["b:-5%"])] == ["b:-5%"]
    assert check_gates(table, ["work.py:*:+5%"]) != []    # module:qualname patterns
    with pytest.raises(ValueError, match="bad gate"):
        Gate("a:5")


def test_gates_ignore_growth_within_noise(tmp_path):
    # GIVEN two short recordings of the same program: some function's share grew by chance
    a = markov_recording(tmp_path / "a.spy", seed=1, samples=300)
    b = markov_recording(tmp_path / "b.spy", seed=2, samples=300)
    table = diff(a, b)
    assert table["total_change"].max() > 0.01
    # THEN a zero-threshold gate still passes: the growth is not significant
    assert not table["total_significant"].any()
    assert check_gates(table, ["*:+0%"]) == []


def test_diff_by_line_and_by_file(tmp_path):
    a = spyanalyze.load(app_recording(tmp_path / "a.spy", parse_share=0.5))
    b = spyanalyze.load(app_recording(tmp_path / "b.spy", parse_share=0.25))
    lines = diff(a, b, by="line").set_index(["qualname", "line"])
    assert lines.loc[("Handler.parse", 20), "total_change"] < 0
    files = diff(a, b, by="file").set_index("module")
    assert files.loc["json/decoder.py", "self_change"] < 0


def test_diff_refuses_an_empty_recording(tmp_path):
    a = spyanalyze.load(app_recording(tmp_path / "a.spy"))
    empty = spyanalyze.load(RecordingBuilder().write(tmp_path / "e.spy"))
    with pytest.raises(EmptyResult, match="second recording"):
        diff(a, empty)


def test_differential_collapsed_stacks(tmp_path):
    a = spyanalyze.load(app_recording(tmp_path / "a.spy", seconds=2.0, parse_share=0.5))
    b = spyanalyze.load(app_recording(tmp_path / "b.spy", seconds=4.0, parse_share=0.25))
    out = io.StringIO()
    write_collapsed_diff(a, b, out, normalize=False)
    lines = parse_differential(out.getvalue())
    parse = "<module> (main.py);run (main.py);Handler.handle (handlers.py);Handler.parse (handlers.py);" \
            "loads (json/__init__.py);JSONDecoder.decode (json/decoder.py)"
    assert lines[parse] == (100, 100)
    assert sum(x for x, _ in lines.values()) == 600 and sum(y for _, y in lines.values()) == 1200
    normalized = io.StringIO()
    write_collapsed_diff(a, b, normalized)
    totals = np.array(list(parse_differential(normalized.getvalue()).values())).sum(axis=0)
    assert abs(totals[0] - totals[1]) <= len(lines)          # scaled to the same total, up to rounding


def parse_differential(text):
    """``stack count_a count_b`` lines -> {stack: (count_a, count_b)}."""
    result = {}
    for line in text.splitlines():
        stack, before, after = line.rsplit(" ", 2)
        result[stack] = (int(before), int(after))
    return result


def test_time_weighted_diff(tmp_path):
    a = spyanalyze.load(app_recording(tmp_path / "a.spy", parse_share=0.5))
    b = spyanalyze.load(app_recording(tmp_path / "b.spy", parse_share=0.25))
    table = diff(a, b, weight="cpu").set_index("qualname")
    assert table.loc["dot", "total_a"] == pytest.approx(1 / 3)
    assert table.loc["dot", "seconds_a"] == pytest.approx(1.0)
    assert table.attrs["weight_a"] == pytest.approx(3.0)



# ------------------------------------------------------------------------------------------
# False alarms and power on simulated programs (spyanalyze.simulate; bench/bench_diff_power.py
# measures the same at more lengths and trials)

SIMULATED = 5000          # samples a recording: 5 s at 1 kHz
CALL = 0.8                # a sample keeps its function with this chance: calls of 5 samples


def simulated_pairs(seed, trials, shape, recordings=1, change=0.0, where="throughout", stay=CALL):
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        yield ([simulate.program(rng, SIMULATED, shape, stay=stay) for _ in range(recordings)],
               [simulate.program(rng, SIMULATED, shape, change, where, stay=stay) for _ in range(recordings)])


@pytest.mark.parametrize("shape", simulate.SHAPES)
def test_unchanged_programs_are_rarely_flagged(shape):
    # GIVEN pairs of runs of one program, steady or starting up before it works
    trials = 60
    flagged = sum(diff(a, b)["total_significant"].any() for a, b in simulated_pairs(7, trials, shape))
    binomial = sum(diff(a, b, blocks=0)["total_significant"].any()
                   for a, b in simulated_pairs(8, 20, shape))
    several = sum(diff(a, b)["total_significant"].any()
                  for a, b in simulated_pairs(9, 20, shape, recordings=3))
    # THEN any function is flagged in about alpha of them at most (Holm), one or three runs a
    # side, where the textbook binomial variance flags most pairs
    assert flagged <= 0.1 * trials
    assert several <= 2
    assert binomial >= 10


@pytest.mark.parametrize("shape, where, change", [("steady", "throughout", 0.04),
                                                  ("phased", "throughout", 0.04),
                                                  ("phased", "second half", 0.08)])
def test_a_real_change_is_found(shape, where, change):
    # GIVEN a function that appears with `change` of the samples, everywhere or only in the
    # second half of the run (0 -> 16% there, 8% of the run)
    trials = 30
    found = 0
    for a, b in simulated_pairs(11, trials, shape, change=change, where=where):
        row = diff(a, b).set_index("qualname").loc[simulate.CHANGED]
        found += bool(row["total_significant"] and row["total_change"] > 0)
    # THEN it is flagged in nearly every pair
    assert found >= 0.9 * trials


def test_sides_accept_lists_of_recordings():
    rng = np.random.default_rng(3)
    runs = [simulate.program(rng, 2000, "steady") for _ in range(4)]
    table = diff(runs[:2], runs[2:])
    assert table.attrs["recordings_a"] == 2 and table.attrs["recordings_b"] == 2
    shares = [r.by_function().set_index("qualname").loc["query", "total_share"] for r in runs]
    row = table.set_index("qualname").loc["query"]
    # a side's share is the mean of its recordings' shares
    assert row["total_a"] == pytest.approx(np.mean(shares[:2]))
    assert row["total_b"] == pytest.approx(np.mean(shares[2:]))
    assert row["count_a"] + row["count_b"] == sum(
        r.by_function().set_index("qualname").loc["query", "total_samples"] for r in runs)
    with pytest.raises(EmptyResult, match="second side"):
        diff(runs[:2], [])
