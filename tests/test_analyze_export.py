"""Exports: speedscope JSON (validated against speedscope's schema) and collapsed stacks, each
parsed back and checked against the samples."""

import io
import json
import re
from collections import Counter

import jsonschema
import numpy as np
import pytest

import spyanalyze
from spyanalyze.export import collapsed, speedscope

from test_analyze_support import SCHEMA, RecordingBuilder, app_recording

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

LINE = re.compile(r"^(.*) (\d+)$")


@pytest.fixture
def app(tmp_path):
    return spyanalyze.load(app_recording(tmp_path / "app.spy"))


def expected_by_labels(rec, weight=None):
    """What an export must add up to: weight per root-first tuple of frame labels."""
    labels = rec.frames["label"].tolist()
    stacks = [tuple(labels[f] for f in s) for s in rec.stacks["frames"]]
    w = np.ones(len(rec)) if weight is None else rec.samples[weight].to_numpy()
    totals = Counter()
    for sid, value in zip(rec.samples["stack"].tolist(), w.tolist()):
        totals[stacks[sid]] += value
    return totals


# ------------------------------------------------------------------------------------------
# speedscope


def export_speedscope(rec, **options):
    out = io.StringIO()
    speedscope.write(rec, out, **options)
    return json.loads(out.getvalue())


def test_speedscope_export_is_valid_against_the_published_schema(app):
    document = export_speedscope(app)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(document, schema)
    assert document["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert document["exporter"] == "spyanalyze@%s" % spyanalyze.__version__
    assert document["name"] == "app.spy"


def test_speedscope_has_one_sampled_profile_per_thread_with_time_weights(app):
    document = export_speedscope(app)
    profiles = document["profiles"]
    assert [p["name"] for p in profiles] == ["MainThread (tid 101)", "worker (tid 102)", "idler (tid 103)"]
    assert 0 <= document["activeProfileIndex"] < len(profiles)
    for profile in profiles:
        assert profile["type"] == "sampled"
        assert profile["unit"] == "nanoseconds"
        assert len(profile["samples"]) == len(profile["weights"])
        assert profile["endValue"] - profile["startValue"] == sum(profile["weights"])
        assert sum(profile["weights"]) == 200 * 10_000_000


def test_speedscope_samples_add_up_to_the_recording(app):
    # WHEN exported and parsed back
    document = export_speedscope(app, weight="samples")
    frames = document["shared"]["frames"]
    parsed = Counter()
    for profile in document["profiles"]:
        assert profile["unit"] == "none"
        for stack, weight in zip(profile["samples"], profile["weights"]):
            parsed[tuple("%s (%s)" % (frames[i]["name"], frames[i]["line"]) for i in stack)] += weight
    # THEN the weight of every stack (root first) is its number of samples
    expected = Counter()
    for labels, count in expected_by_labels(app).items():
        expected[tuple(re.sub(r" \(.*:(\d+)\)$", r" (\1)", label) for label in labels)] += count
    assert parsed == expected
    assert frames[0]["file"] == "/home/dev/proj/app/main.py"


def test_speedscope_merges_consecutive_identical_stacks_in_time_order(tmp_path):
    builder = RecordingBuilder().thread(1, "MainThread")
    a, b = ("/p/x.py", "a", 1), ("/p/x.py", "b", 2)
    for i, leaf in enumerate([a, a, a, b, b, a]):
        builder.sample(i * 10_000_000, 1, (leaf,))
    document = export_speedscope(spyanalyze.load(builder.write(tmp_path / "r.spy")), weight="samples")
    profile = document["profiles"][0]
    names = [document["shared"]["frames"][s[0]]["name"] for s in profile["samples"]]
    assert names == ["a", "b", "a"] and profile["weights"] == [3, 2, 1]


def test_speedscope_cpu_weights_and_empty_stacks_validate(tmp_path):
    builder = RecordingBuilder().thread(1, "MainThread").thread(2, "native", pid=99)
    builder.sample(0, 1, (("/p/x.py", "f", 3),), cpu=123)
    builder.sample(0, 2, (), pid=99, cpu=7)
    document = export_speedscope(spyanalyze.load(builder.write(tmp_path / "r.spy")), weight="cpu")
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert [p["name"] for p in document["profiles"]] == ["pid 99: native (tid 2)",
                                                         "pid 4242: MainThread (tid 1)"]
    # a sample without Python frames is a root of its own, as in collapsed stacks and top
    [[no_frames]] = document["profiles"][0]["samples"]
    assert document["shared"]["frames"][no_frames]["name"] == "<no Python frames>"
    assert [p["weights"] for p in document["profiles"]] == [[7], [123]]


# ------------------------------------------------------------------------------------------
# collapsed stacks


def parse_collapsed(text):
    result = {}
    for line in text.splitlines():
        match = LINE.match(line)
        assert match, line
        result[tuple(match.group(1).split(";"))] = int(match.group(2))
    return result


def test_collapsed_lines_are_root_first_py_spy_frames_with_sample_counts(app):
    out = io.StringIO()
    collapsed.write(app, out)
    parsed = parse_collapsed(out.getvalue())
    assert parsed == {k: int(v) for k, v in expected_by_labels(app).items()}
    worker = ("Thread.run (threading.py:975)", "work (worker.py:15)", "dot (numpy/core/multiarray.py:741)")
    assert parsed[worker] == 200
    assert out.getvalue().splitlines() == sorted(out.getvalue().splitlines())


@pytest.mark.parametrize("weight", ["wall", "cpu"])
def test_collapsed_time_weights_are_microseconds(app, weight):
    out = io.StringIO()
    collapsed.write(app, out, weight=weight)
    parsed = parse_collapsed(out.getvalue())
    expected = {k: round(v / 1000) for k, v in expected_by_labels(app, weight).items() if round(v / 1000)}
    assert parsed == expected


def test_collapsed_thread_roots_and_python_versions_without_qualname(tmp_path):
    # GIVEN a 3.9 recording: qualname is the plain name there
    builder = RecordingBuilder(python_version="3.9.18").thread(1, "MainThread")
    builder.sample(0, 1, (("/p/app.py", "<module>", 1), ("/p/app.py", "run", 5)))
    builder.sample(0, 2, ())
    out = io.StringIO()
    collapsed.write(spyanalyze.load(builder.write(tmp_path / "r.spy")), out, threads=True)
    assert out.getvalue().splitlines() == ["MainThread (tid 1);<module> (app.py:1);run (app.py:5) 1",
                                           "tid 2;<no Python frames> 1"]


def test_collapsed_without_lines_merges_lines_of_a_function(tmp_path):
    builder = RecordingBuilder().thread(1, "MainThread")
    builder.sample(0, 1, (("/p/app.py", "f", 1),)).sample(10_000_000, 1, (("/p/app.py", "f", 2),))
    text = "".join("%s %d\n" % kv for kv in collapsed.stack_weights_by_text(
        spyanalyze.load(builder.write(tmp_path / "r.spy")), lines=False).items())
    assert text == "f (app.py) 2\n"
