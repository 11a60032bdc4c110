"""The samples table's dtypes: ids in 4 bytes when they fit (a 10 M-sample recording stays in
memory), 8 when a file's ids do not (another profiler's thread ids can reach 2^32 - 1), and
every view, filter and export works with either."""

import io

import numpy as np
import pytest

import spyanalyze
from spyanalyze.export import collapsed

from test_analyze_support import RecordingBuilder, app_recording

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

BIG_TID = 3_000_000_000          # above int32: only a file not from Linux's pid space has it


def test_ids_are_int32_and_strings_categorical(tmp_path):
    samples = spyanalyze.load(app_recording(tmp_path / "app.spy")).samples
    for column in ("pid", "tid", "stack"):
        assert samples[column].dtype == np.int32, column
    for column in ("thread", "syscall", "wchan"):
        assert samples[column].dtype == "category", column
    for column in ("t", "wall", "cpu", "cpu_delta", "rss"):
        assert samples[column].dtype == np.int64, column
    assert samples.memory_usage(deep=True).sum() / len(samples) <= 84


def test_ids_that_do_not_fit_stay_int64_and_threads_stay_apart(tmp_path):
    builder = RecordingBuilder().thread(7, "small").thread(BIG_TID, "big")
    run = ("/app/a.py", "run", 1)
    for i in range(20):
        builder.sample(i * 10_000_000, 7, [run, ("/app/a.py", "small_work", 5)])
        builder.sample(i * 10_000_000 + 1000, BIG_TID, [run, ("/app/a.py", "big_work", 9)])
    rec = spyanalyze.load(builder.write(tmp_path / "big.spy"))
    assert rec.samples["tid"].dtype == np.int64 and rec.samples["pid"].dtype == np.int32
    assert rec.samples["tid"].max() == BIG_TID
    by_thread = rec.by_thread().set_index("thread")
    assert by_thread.loc["big", "tid"] == BIG_TID and by_thread.loc["big", "samples"] == 20
    assert rec.timeline("1s")["threads"].max() == 2
    big = rec.filter(threads="big")
    assert set(big.leaves()["qualname"]) == {"big_work"}
    out = io.StringIO()
    collapsed.write(rec, out, threads=True)
    assert "big" in out.getvalue() and "small" in out.getvalue()
