"""A recording is untrusted input: mutated files give the package's own error, never another.

A seeded, bounded mutation fuzzer over the golden recordings: bytes changed, flipped, cut and
inserted, then loaded, summarised, viewed and exported as ``spyanalyze`` does.  Every failure
must be a ``SpyError`` (one line in the CLI).
"""

import glob
import io
import os
import random

import pytest

import spyanalyze
from spyanalyze import views
from spyanalyze.export import collapsed, speedscope
from spyrec.errors import SpyError

GOLDEN = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                       "formats", "golden", "v1", "*.spy")))
CASES = 400


def mutated(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(data))
        how = rng.randrange(4)
        if how == 0:
            data[at] = rng.randrange(256)
        elif how == 1:
            data[at] ^= 1 << rng.randrange(8)
        elif how == 2:
            del data[at:at + rng.randint(1, 16)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_recordings_fail_only_with_the_packages_error(seed, tmp_path):
    rng = random.Random(seed)
    seeds = [open(path, "rb").read() for path in GOLDEN]
    assert seeds
    path = tmp_path / "mutated.spy"
    outcomes = {"read": 0, "refused": 0}
    for _ in range(CASES // 4):
        path.write_bytes(mutated(rng, rng.choice(seeds)))
        try:
            rec = spyanalyze.load(path)
            views.summary(rec)
            rec.by_function()
            rec.by_thread()
            collapsed.write(rec, io.StringIO())
            speedscope.write(rec, io.StringIO())
            outcomes["read"] += 1
        except SpyError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0, outcomes  # the mutations do reach the checks
