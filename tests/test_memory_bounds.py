"""Crafted files that ask a reader for far more memory than they hold (formats/golden/amplify,
written by formats/golden/make_golden.py) are refused in one line, the reader's peak memory
near where it started.

Each runs ``spyanalyze info`` in a child process under an address-space limit
(``RLIMIT_AS``), and the child reports its own peak RSS: the ceiling asserted is the budget
given (``--max-memory``) above what reading a small valid file takes.
"""

import os
import subprocess
import sys

import pytest

import spyanalyze
from spyanalyze.errors import TooLarge

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AMPLIFY = os.path.join(ROOT, "formats", "golden", "amplify")
MiB = 1 << 20
ADDRESS_SPACE = 2 << 30
BUDGET = 128 * MiB
#: What the interpreter's allocator and pandas' caches may add beyond what the budget charges.
SLACK = 48 * MiB

RUNNER = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from spyanalyze.cli import main
try:
    main(sys.argv[2:])
finally:
    sys.stderr.write("peak %d\\n" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
"""


def run_info(path, *options):
    """(exit code, stderr lines other than the peak, peak RSS in bytes) of ``spyanalyze info``."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", RUNNER, str(ADDRESS_SPACE), *options, "info", path],
                            capture_output=True, text=True, timeout=120, env=env)
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("peak "), result.stderr
    return result.returncode, lines[:-1], int(lines[-1].split()[1])


@pytest.fixture(scope="module")
def baseline():
    code, _lines, peak = run_info(os.path.join(ROOT, "formats", "golden", "v1", "complete.spy"))
    assert code == 0
    return peak


@pytest.mark.parametrize("name, message", [
    ("many-samples", "a SAMPLES chunk of 1700393 samples would take"),
    ("many-strings", "STRINGS 'values' of 31457280 strings would take"),
    ("long-stacks", "STACKS 'frames' of 62914560 items would take"),
    ("nested-unknown-key", "under keys this reader does not know"),
])
def test_amplification_is_refused_in_one_line_within_the_budget(name, message, baseline):
    code, lines, peak = run_info(os.path.join(AMPLIFY, name + ".spy"), "--max-memory", str(BUDGET))
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("spyanalyze: error: corrupt recording"), lines
    assert message in lines[0]
    assert peak < baseline + BUDGET + SLACK, (peak - baseline) / MiB


def test_the_default_budget_follows_the_address_space_limit(baseline):
    # GIVEN no --max-memory: the budget is half the address space the limit leaves (1 GiB)
    code, lines, peak = run_info(os.path.join(AMPLIFY, "many-samples.spy"))
    # THEN the second 1.7-million-sample chunk is refused by the budget, not by a MemoryError
    assert code == 1 and len(lines) == 1, lines
    assert "past the reader's memory budget of 1.0 GiB" in lines[0]
    assert peak < baseline + ADDRESS_SPACE // 2


def test_a_chunk_of_an_unknown_kind_is_skipped_without_being_decompressed(baseline):
    code, lines, peak = run_info(os.path.join(AMPLIFY, "unknown-kind.spy"), "--max-memory", str(BUDGET))
    assert code == 0
    assert len(lines) == 1 and "lost data: the recording has no trailer" in lines[0]
    assert peak < baseline + SLACK          # its 256 MiB are never inflated


def test_a_timeline_over_a_long_span_is_refused_before_it_is_built():
    # GIVEN a valid recording whose two samples are 36 years apart
    recording = spyanalyze.load(os.path.join(AMPLIFY, "long-span.spy"))
    # THEN a timeline at 1 s (10^9 buckets) is one clear error; at a coarse frequency it works
    with pytest.raises(TooLarge, match="use a coarser frequency"):
        recording.timeline("1s")
    assert recording.timeline("1000D")["samples"].sum() == 2


@pytest.mark.parametrize("text, size", [("512M", 512 * MiB), ("2G", 2 << 30), ("1.5GiB", 3 << 29),
                                        ("64kb", 64 << 10), ("100", 100)])
def test_memory_budgets_are_read_in_binary_units(text, size):
    from spyformat.limits import parse_size
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["abc", "0", "-5M", "2X", ""])
def test_a_budget_that_is_no_size_is_refused(text):
    from spyformat.limits import parse_size
    with pytest.raises(ValueError):
        parse_size(text)
