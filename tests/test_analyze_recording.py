"""spyanalyze.load and the Recording model: tables, weights, paths, bad input, round trip."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import spyanalyze
from spyanalyze.errors import CorruptRecording, IncompatibleRecording, UnreadableFile
from spyanalyze.paths import module_paths
from spyanalyze.tables import MAX_GAP_INTERVALS, sample_weights
import spyformat
from spyformat import SampleFlag
from spyformat.chunks import encode_preamble

from test_analyze_support import MAIN, QUERY, RUN, RecordingBuilder, app_recording

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed


@pytest.fixture
def app(tmp_path):
    return spyanalyze.load(app_recording(tmp_path / "app.spy"))


def test_samples_table_has_one_row_per_sample_with_decoded_flags(app):
    # GIVEN the 2-second, 100 Hz, 3-thread app recording
    samples = app.samples
    # THEN every sample is a row, in time order, with the documented columns
    assert len(samples) == 600
    assert list(samples.columns) == ["t", "timestamp", "pid", "tid", "thread", "stack", "wall",
                                     "ticks", "cpu", "cpu_delta", "rss", "syscall", "wchan",
                                     "idle", "gil", "torn", "flags"]
    assert samples["t"].is_monotonic_increasing
    assert set(samples["thread"].cat.categories) == {"MainThread", "worker", "idler"}
    idler = samples[samples["thread"] == "idler"]
    assert idler["idle"].all() and not idler["gil"].any()
    assert samples.loc[samples["thread"] == "MainThread", "gil"].mean() == 0.5
    assert samples["timestamp"].iloc[0] == pd.Timestamp(1_700_000_000_000_000_000, unit="ns", tz="UTC")
    assert (samples["wall"] == 10_000_000).all()
    assert samples.loc[samples["thread"] == "worker", "cpu"].sum() == 200 * 5_000_000


def test_frames_and_stacks_are_tables_with_module_paths(app):
    frames = app.frames.set_index("qualname")
    assert frames.loc["Handler.parse", "module"] == "handlers.py"
    assert frames.loc["Handler.parse", "kind"] == "user"
    assert frames.loc["JSONDecoder.decode", "module"] == "json/decoder.py"
    assert frames.loc["JSONDecoder.decode", "kind"] == "stdlib"
    assert frames.loc["dot", "module"] == "numpy/core/multiarray.py"
    assert frames.loc["dot", "kind"] == "site-packages"
    assert frames.loc["Handler.parse", "label"] == "Handler.parse (handlers.py:20)"
    stacks = app.stacks
    first = stacks.loc[app.samples["stack"].iloc[0]]
    assert [app.frames.loc[f, "qualname"] for f in first["frames"]][:3] == \
        ["<module>", "run", "Handler.handle"]
    assert first["depth"] == len(first["frames"]) and first["leaf"] == first["frames"][-1]


@pytest.mark.parametrize("path, module, kind", [
    ("/usr/lib/python3.11/json/decoder.py", "json/decoder.py", "stdlib"),
    ("/root/.pyenv/versions/3.12.1/lib/python3.12/threading.py", "threading.py", "stdlib"),
    ("/opt/venv/lib/python3.11/site-packages/numpy/core/x.py", "numpy/core/x.py", "site-packages"),
    ("/usr/lib/python3/dist-packages/yaml/loader.py", "yaml/loader.py", "site-packages"),
    ("C:\\Python311\\Lib\\json\\decoder.py", "json/decoder.py", "stdlib"),
    ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap>", "stdlib"),
    ("<string>", "<string>", "other"),
    ("relative/./script.py", "relative/script.py", "user"),
])
def test_module_paths_strip_library_prefixes(path, module, kind):
    assert module_paths([path]) == ([module], [kind])


def test_user_paths_are_relative_to_the_common_root_or_the_recorded_cwd():
    files = ["/home/a/proj/app/main.py", "/home/a/proj/app/util/x.py", "/home/a/proj/tests/t.py"]
    assert module_paths(files)[0] == ["app/main.py", "app/util/x.py", "tests/t.py"]
    assert module_paths(files[:1])[0] == ["main.py"]
    assert module_paths(files, root="/home/a")[0] == \
        ["proj/app/main.py", "proj/app/util/x.py", "proj/tests/t.py"]
    # files outside the recorded working directory fall back to their common root
    assert module_paths(files + ["/srv/x/tool.py"], root="/home/a/proj/app")[0] == \
        ["main.py", "util/x.py", "home/a/proj/tests/t.py", "srv/x/tool.py"]
    assert module_paths(files[:1], root="/")[0] == ["main.py"]


def test_a_sample_stands_for_the_time_to_the_threads_next_sample_within_limits():
    # GIVEN two threads sampled every 10 ms; thread 1 has a late sample, two skipped ticks
    # and one long gap (the recorder stopped)
    t = np.array([0, 10, 22, 30, 60, 70, 300, 310, 100], dtype=np.int64) * 1_000_000
    key = np.array([1, 1, 1, 1, 1, 1, 1, 1, 2], dtype=np.int64)
    # WHEN weights are derived
    wall, ticks = sample_weights(t, key, interval_ns=10_000_000)
    # THEN each sample stands for its gap to the next one, a skip included; a thread's last
    # sample and the one before the unexplained gap get one interval
    assert (wall // 1_000_000).tolist() == [10, 12, 8, 30, 10, 10, 10, 10, 10]
    assert ticks.tolist() == [1.0, 1.2, 0.8, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert 30 < MAX_GAP_INTERVALS * 10 < 230


def test_duplicate_definitions_are_folded_onto_one_id(tmp_path):
    # GIVEN a writer that forgets its interning tables every 2 entries, so the same frames and
    # stacks are defined again under new ids (the format allows it)
    builder = RecordingBuilder()
    builder.thread(1, "MainThread")
    for i in range(40):
        builder.sample(i * 10_000_000, 1, (MAIN, RUN, QUERY) if i % 2 else (MAIN, RUN))
    rec = spyanalyze.load(builder.write(tmp_path / "dup.spy", max_interned=2, max_batch=5))
    # THEN the tables hold each distinct frame and stack once
    assert len(rec.frames) == 3
    assert len(rec.stacks) == 2
    assert rec.by_function().set_index("qualname").loc["query", "self_samples"] == 20


def test_unnamed_threads_and_missing_thread_records_get_a_display_name(tmp_path):
    builder = RecordingBuilder()
    builder.sample(0, 77, (MAIN,))
    rec = spyanalyze.load(builder.write(tmp_path / "anon.spy"))
    assert rec.samples["thread"].tolist() == ["tid 77"]


def test_a_recording_without_samples_loads_empty(tmp_path):
    rec = spyanalyze.load(RecordingBuilder().write(tmp_path / "empty.spy"))
    assert rec.empty and rec.duration == 0.0
    assert rec.by_function().empty and rec.by_thread().empty and rec.timeline().empty


def test_a_torn_tail_loads_what_is_complete(tmp_path):
    # GIVEN a recording cut off in the middle of its last chunk (a killed recorder)
    path = app_recording(tmp_path / "app.spy")
    data = path.read_bytes()
    torn = tmp_path / "torn.spy"
    torn.write_bytes(data[:-30])
    # WHEN it is loaded
    rec = spyanalyze.load(torn)
    # THEN the samples before the torn chunk are there, and the loss is reported
    assert rec.lost_bytes > 0
    assert rec.trailer is None
    assert len(rec) == 600


def test_a_recording_can_be_read_from_a_stream_via_dash(tmp_path, monkeypatch):
    path = app_recording(tmp_path / "app.spy")

    class FakeStdin:
        buffer = io.BytesIO(path.read_bytes())
    monkeypatch.setattr("sys.stdin", FakeStdin)
    assert len(spyanalyze.load("-")) == 600


@pytest.mark.parametrize("content, error, text", [
    (b"", CorruptRecording, "empty file"),
    (b"hello, this is not a recording at all", CorruptRecording, "bad magic"),
    (encode_preamble()[:6], CorruptRecording, "too short"),
    (encode_preamble(), CorruptRecording, "no HEADER"),
    (encode_preamble((9, 0)) + b"\0" * 32, IncompatibleRecording, "9.0"),
])
def test_bad_files_raise_one_clear_error(tmp_path, content, error, text):
    path = tmp_path / "bad.spy"
    path.write_bytes(content)
    with pytest.raises(error, match=text):
        spyanalyze.load(path)


def test_a_flipped_byte_is_a_checksum_error(tmp_path):
    path = app_recording(tmp_path / "app.spy")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecording, match="checksum"):
        spyanalyze.load(path)


def test_missing_files_and_directories_are_unreadable(tmp_path):
    with pytest.raises(UnreadableFile, match="no such file"):
        spyanalyze.load(tmp_path / "nope.spy")
    with pytest.raises(UnreadableFile, match="directory"):
        spyanalyze.load(tmp_path)


def test_write_then_load_gives_the_same_recording(tmp_path):
    # GIVEN a loaded recording
    original = spyanalyze.load(app_recording(tmp_path / "app.spy"))
    # WHEN it is written back and read again
    out = tmp_path / "copy.spy"
    with open(out, "wb") as stream:
        spyanalyze.write(original, stream)
    copy = spyanalyze.load(out)
    # THEN samples, frames, stacks, threads and header agree
    columns = ["t", "pid", "tid", "thread", "wall", "cpu", "rss", "idle", "gil", "torn", "flags"]
    pd.testing.assert_frame_equal(original.samples[columns], copy.samples[columns])
    def labels(rec):
        return [tuple(rec.frames["label"].iloc[list(s)]) for s in rec.stacks["frames"]]

    def stacks_of(rec):
        return [labels(rec)[s] for s in rec.samples["stack"]]
    assert stacks_of(original) == stacks_of(copy)
    assert copy.header["argv"] == original.header["argv"]
    assert copy.threads[["tid", "name"]].values.tolist() == original.threads[["tid", "name"]].values.tolist()
    assert copy.trailer == original.trailer


def test_idle_flag_reaches_samples_only_through_spyformat_constants(app):
    assert (app.samples["flags"].to_numpy() & SampleFlag.IDLE != 0).tolist() == app.samples["idle"].tolist()


def test_record_fields_are_written_back_exactly(tmp_path):
    # GIVEN a recording whose one thread ended at the last moment a time may name, another not
    # (found by the fuzzer: a column of ints with a gap became floats, 2^60 - 1 became 2^60)
    from recordfuzz import golden
    formats = Path(__file__).resolve().parent.parent / "formats"
    base = (formats / "golden" / "v1" / "complete.spy").read_bytes()

    def edit(chunks):
        chunks[8][1]["end_ns"] = (1 << 60) - 1
        chunks[4][1]["exit_code"] = -(1 << 31)
    path = tmp_path / "edge.spy"
    path.write_bytes(golden.edited(base, edit))
    # WHEN it is loaded and written back (what spyanalyze filter does)
    out = io.BytesIO()
    spyanalyze.write(spyanalyze.load(path), out)
    # THEN the records read back hold the very same values
    again = spyformat.read_recording(io.BytesIO(out.getvalue()))
    assert again.threads[(4242, 4243)]["end_ns"] == (1 << 60) - 1
    assert "end_ns" not in again.threads[(4242, 4242)]
    assert again.processes[4242]["exit_code"] == -(1 << 31)
