"""The diff on real recordings of a phased job (tests/targets/phased.py: start-up, then work):
a function added to the work phase only must be flagged and fail a --fail-if gate, which two
recordings of the unchanged job pass.

These run the recorder (about 3 s of CPU a recording) and are skipped, saying why, when
``python -m spyrec`` is not available or cannot attach to its child.
"""

import pytest
from click.testing import CliRunner

import spyanalyze
from spyanalyze.cli import GATE_FAILED, main
from spyanalyze.diff import diff

from test_analyze_support import PHASED, record_target

STARTUP, WORK = 1.0, 2.0          # seconds of CPU in each phase
EXTRA = 0.12                      # validate's share of the work phase: 8% of the job
RATE = 500


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Paths of two recordings of the plain job and one of the job with validate()."""
    folder = tmp_path_factory.mktemp("phased")
    runs = {}
    for name, extra in (("plain-1", ()), ("plain-2", ()), ("extra", ("--extra", str(EXTRA)))):
        path, spent = record_target(folder, name, PHASED, (str(STARTUP), str(WORK)), STARTUP + WORK, RATE,
                                    extra)
        assert ("validate" in spent) == bool(extra)
        runs[name] = path
    return runs


def job_rows(table):
    """The rows of phased.py's own functions."""
    return table[table["module"].str.endswith("phased.py")].set_index("qualname")


def test_a_function_added_to_one_phase_is_significant(recorded):
    before, after = spyanalyze.load(recorded["plain-1"]), spyanalyze.load(recorded["extra"])
    table = job_rows(diff(before.filter(idle="exclude"), after.filter(idle="exclude")))
    row = table.loc["validate"]
    assert row["total_a"] == 0 and row["count_b"] >= 0.03 * (STARTUP + WORK) * RATE, row
    assert row["total_change"] == pytest.approx(EXTRA * WORK / (STARTUP + WORK), abs=0.04), row
    assert row["total_significant"], row
    # the start-up functions kept their share of the job: not flagged
    for name in ("load_config", "build_index"):
        assert not table.loc[name, "total_significant"], table.loc[name]


def test_gate_fails_on_the_added_function_and_passes_on_an_unchanged_job(recorded):
    plain_1, plain_2, extra = (str(recorded[name]) for name in ("plain-1", "plain-2", "extra"))
    grew = CliRunner().invoke(main, ["diff", plain_1, extra, "--fail-if", "validate:+3%"])
    assert grew.exit_code == GATE_FAILED, grew.output
    assert "gate validate:+3% failed" in grew.output
    # The gate asks for a significant growth of 3 points: an unchanged job passes it.  (That
    # no function at all is flagged holds only 95% of the time, by design: the false-alarm
    # rate is checked over many unchanged runs in test_analyze_diff.py.)
    same = CliRunner().invoke(main, ["diff", plain_1, plain_2, "--fail-if", "*:+3%"])
    assert same.exit_code == 0, same.output


def test_several_recordings_a_side(recorded):
    plain_1, plain_2, extra = (str(recorded[name]) for name in ("plain-1", "plain-2", "extra"))
    result = CliRunner().invoke(main, ["diff", plain_1, plain_2, "--vs", extra, "--fail-if", "validate:+3%"])
    assert result.exit_code == GATE_FAILED, result.output
    assert "before: 2 recordings, " in result.output
