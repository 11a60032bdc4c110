"""A recording is untrusted input: mutated files give the package's own error, never another.

Two seeded, bounded fuzzers over the golden recordings (tests/recordfuzz.py): one changes,
flips, cuts and inserts bytes; the other decodes the records, mutates their fields (edge values,
wrong types, missing keys, records duplicated, reordered, dropped) and encodes them again with
valid checksums, so that its inputs reach the field checks behind the CRC.  Each input is read,
dumped, summarised, viewed, exported and written back as ``spyanalyze`` does; every failure must
be a ``SpyError`` (one line in the CLI) and no warning may be printed.
"""

import random

import pytest

import spyanalyze
from spyanalyze import views
from spyrec.errors import SpyError

import recordfuzz

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

BYTE_CASES = 400
RECORD_CASES = 2000
SEEDS = 4


@pytest.mark.parametrize("seed", range(SEEDS))
def test_mutated_recordings_fail_only_with_the_packages_error(seed, tmp_path):
    rng = random.Random(seed)
    seeds = recordfuzz.seeds()
    assert seeds
    outcomes = {}
    for _ in range(BYTE_CASES // SEEDS):
        mutated = recordfuzz.mutated_bytes(rng, rng.choice(seeds))
        outcome = recordfuzz.run_case(mutated, str(tmp_path / "m.spy"))
        assert not recordfuzz.is_crash(outcome)
        outcomes[outcome.split(":")[0]] = outcomes.get(outcome.split(":")[0], 0) + 1
    assert outcomes.get("refused") and outcomes.get("read"), outcomes  # both happen


def test_the_package_error_is_also_what_load_raises(tmp_path):
    # load() wraps the same reader: a mutated file is a SpyError there too, in one line
    rng = random.Random(11)
    path = tmp_path / "m.spy"
    refused = 0
    for _ in range(50):
        path.write_bytes(recordfuzz.mutated(rng, rng.choice(recordfuzz.seeds())))
        try:
            spyanalyze.load(path)
        except SpyError as exc:
            refused += 1
            assert "\n" not in str(exc)
    assert refused


@pytest.mark.parametrize("seed", range(SEEDS))
def test_mutated_records_fail_only_with_the_packages_error(seed, tmp_path):
    outcomes = recordfuzz.run(100 + seed, RECORD_CASES // SEEDS, tmp_path)
    crashes = {site: n for site, n in outcomes.items() if recordfuzz.is_crash(site)}
    assert not crashes
    # the mutations get past the checksum to many different field checks, and some still read
    reasons = [o for o in outcomes if o.startswith("refused: ") and "checksum" not in o]
    assert len(reasons) >= 30 and outcomes.get("read", 0) > 0, outcomes


def test_a_crash_is_reported_with_its_site(tmp_path, monkeypatch):
    # GIVEN a view that fails with an exception that is not the package's
    def broken(recording):
        raise KeyError("boom")
    monkeypatch.setattr(views, "summary", broken)
    # THEN the fuzzer reports it as a crash site, not as a refusal
    data = recordfuzz.seeds()[0]
    outcome = recordfuzz.run_case(data, str(tmp_path / "x.spy"))
    assert recordfuzz.is_crash(outcome) and outcome.startswith("KeyError at tests/test_hostile_files.py")
