"""``spyrec --kernel``: each waiting thread's kernel frames under its Python frames.

The waits target (tests/targets/waits.py) has threads blocked in a sleep, a lock, a socket read
and an event, and one running.  Recorded with ``--kernel``, every sample of a waiting thread
must end with the kernel functions it was blocked in (entered through the system call the
``syscall`` column names), right under the Python line that made the call; the running thread
gets none; and the analyser shows, hides, exports and rewrites them as kernel frames.
"""

import io
import subprocess
import sys

import pytest
from click.testing import CliRunner

import spyanalyze
import spyformat
from pythons import ROOTED, marked_lines, python_for, running_target, target_path
from spyanalyze.cli import main as spyanalyze_main

SPYREC = [sys.executable, "-m", "spyrec"]
MARKS = marked_lines(target_path("waits.py"))
#: Each waiting thread: the Python function it waits in, and its line.
WAITING = {"sleeper": ("nap", "wait-sleep"), "locker": ("take", "wait-lock"),
           "reader": ("receive", "wait-recv")}
#: The oldest and newest CPython of each kind of build: the kernel frames do not depend on
#: the version, their place under the Python frames goes through the same code for all.
LABELS = ("3.8", "3.13") + ROOTED[-1:]


@pytest.fixture(scope="module", params=LABELS)
def kernel_recording(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("kernel") / "waits.spy"
    with running_target(python_for(request.param), "waits.py", "30") as target:
        result = subprocess.run(SPYREC + ["-q", "--kernel", "-o", str(out), "-p", str(target.pid),
                                          "-d", "1", "-r", "500"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return request.param, target, spyanalyze.load(out), out


def thread_samples(rec, target, name):
    tid = (target.info["main"] if name == "MainThread" else target.info["threads"][name])["native_id"]
    return rec.samples[rec.samples["tid"] == tid]


def stack_of(rec, stack_id):
    """(label, kind) of each frame, root first."""
    frames = rec.frames
    return [(frames.at[f, "qualname"], frames.at[f, "line"], frames.at[f, "kind"])
            for f in rec.stack_table.tuples[stack_id]]


def test_a_waiting_threads_kernel_frames_sit_under_its_python_line(kernel_recording):
    label, target, rec, _ = kernel_recording
    for name, (function, mark) in WAITING.items():
        samples = thread_samples(rec, target, name)
        assert len(samples) > 300 and samples["idle"].all(), (label, name)
        for stack_id, call in zip(samples["stack"].tolist(), samples["syscall"].astype(str).tolist()):
            stack = stack_of(rec, stack_id)
            kinds = [kind for _, _, kind in stack]
            first = kinds.index("kernel")
            assert set(kinds[first:]) == {"kernel"}, (label, name, stack)  # innermost, together
            assert stack[first - 1][:2] == (function, MARKS[mark]), (label, name, stack)
            kernel = [qualname for qualname, _, _ in stack[first:]]
            assert kernel[0].startswith("entry_SYSCALL_64"), (label, name, kernel)
            assert "__x64_sys_" + call in kernel, (label, name, call, kernel)


def test_a_running_thread_has_no_kernel_frames(kernel_recording):
    label, target, rec, _ = kernel_recording
    samples = thread_samples(rec, target, "spinner")
    running = samples[~samples["idle"]]
    assert len(running) > 0.8 * len(samples), label
    kernel = set(rec.frames.index[rec.frames["kind"] == "kernel"])
    assert not any(kernel & set(rec.stack_table.tuples[s]) for s in running["stack"].tolist()), label


def test_the_analyser_shows_hides_exports_and_rewrites_kernel_frames(kernel_recording, tmp_path):
    label, target, rec, path = kernel_recording
    run = CliRunner()
    top = run.invoke(spyanalyze_main, ["top", str(path), "--idle", "only", "-n", "0"])
    assert top.exit_code == 0, top.output
    assert " (kernel)" in top.output                       # labelled as kernel functions
    pruned = run.invoke(spyanalyze_main, ["top", str(path), "--idle", "only", "-n", "0",
                                          "--prune", "kernel"])
    assert pruned.exit_code == 0 and " (kernel)" not in pruned.output, pruned.output
    take = next(line for line in pruned.output.splitlines() if "  take (" in line)
    assert take.split()[0] == take.split()[1], take          # its own time again: the leaf
    python_only = run.invoke(spyanalyze_main, ["top", str(path), "--idle", "only", "-n", "0",
                                               "--frames", "python"])
    assert python_only.output.splitlines()[1:] == pruned.output.splitlines()[1:]
    kernel_only = run.invoke(spyanalyze_main, ["top", str(path), "--idle", "only", "-n", "0",
                                               "--frames", "kernel"])
    functions = [line.split("  ")[-1] for line in kernel_only.output.splitlines()[2:]]
    assert functions and all(f.endswith(" (kernel)") for f in functions), kernel_only.output
    collapsed = run.invoke(spyanalyze_main, ["export", str(path), "-f", "collapsed", "--idle", "only"])
    lines = collapsed.output.splitlines()
    assert any(";entry_SYSCALL_64" in line and "_[k];" in line for line in lines), lines[:3]
    for line in lines:
        frames = line.rsplit(" ", 1)[0].split(";")
        marked = [frame.endswith("_[k]") for frame in frames]
        assert marked == sorted(marked), line                # kernel frames only innermost
    copy = tmp_path / "copy.spy"
    rewritten = run.invoke(spyanalyze_main, ["filter", str(path), "-o", str(copy), "--idle", "include"])
    assert rewritten.exit_code == 0, rewritten.output
    again = spyanalyze.load(copy)
    assert (again.frames["kind"] == "kernel").sum() == (rec.frames["kind"] == "kernel").sum() > 5


def test_frame_kinds_are_written_only_where_a_chunk_has_other_than_python_frames():
    """A recording without kernel frames reads the same to a 1.1 reader: no ``kind`` key."""
    for kinds in ((spyformat.FrameKind.PYTHON,), (spyformat.FrameKind.PYTHON, spyformat.FrameKind.KERNEL)):
        out = io.BytesIO()
        writer = spyformat.SpyWriter(out)
        interned = spyformat.Interner(writer)
        writer.write_header({"pid": 1, "interval_ns": 1_000_000, "start_mono_ns": 0})
        frame_ids = [interned.frame_id("f.py" if kind == 0 else spyformat.KERNEL_FILE, "f", "f", 1, -1, kind)
                     for kind in kinds]
        writer.sample(0, 1, 1, interned.stack_id(tuple(frame_ids)), 0, 0, 0)
        writer.close({})
        dumped = io.StringIO()
        spyformat.dump(io.BytesIO(out.getvalue()), dumped)
        assert ("'kind'" in dumped.getvalue()) == (len(kinds) > 1), dumped.getvalue()
        data = spyformat.read_recording(io.BytesIO(out.getvalue()))
        assert data.frames["kind"] == list(kinds)
