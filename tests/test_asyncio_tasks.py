"""The asyncio task each sample's thread was running, on every CPython.

The tasks target (tests/targets/tasks.py) runs a thousand tasks that wait and two, ``alpha`` and
``beta``, that take turns on the loop thousands of times a second, and measures how long each
ran.  Each sample taken in a task carries a ``<task>`` frame named after it, just outside the
task's coroutine; its total share must lie between the shares the target measured of the task's
work and of its steps (see the target), and it must be the task whose work is on the stack,
however often the loop switched during the read.
"""

import json
import subprocess
import sys
from collections import Counter

import pytest
from click.testing import CliRunner

import spyanalyze
from spyanalyze.cli import main
from pythons import EVERY_VERSION, ROOTED, python_for, running_target, stop_target
from spyformat import TASK_FILE
from shares import sampling_margin
from test_record import spyrec

#: How far (in share points) a task's total may be outside the target's own measurements however
#: many the samples; chance (tests/shares.py) widens it for fewer.
TOLERANCE = 0.02
#: Share of the samples in a task's work that may name another task, and that may name none:
#: before 3.14 a task is known once seen being stepped, and its first samples may go without
#: it (0-1% on a quiet machine, 1.0% once in a full run).
WRONG_TASK = 0.01
UNNAMED = {label: 0.01 if label in ROOTED else 0.03 for label in EVERY_VERSION}
SPYREC = [sys.executable, "-m", "spyrec"]
#: Share of the samples in a request's handler and in a client that must name their task
#: (3.9: 0.83 and 0.74, 3.12: 0.96 and 0.85, 3.13: 0.96 and 0.78, 3.15: 1.00 and 0.81): a
#: task's first samples go without it when its steps end before the loops are read.
SERVER_TASKS = {"handle": 0.75, "client": 0.6}


@pytest.fixture(scope="module", params=EVERY_VERSION)
def tasks_recording(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks") / "tasks.spy"
    with running_target(python_for(request.param), "tasks.py", "3") as target:
        result = spyrec("-q", "-o", out, "-p", target.pid, "-d", "2", "-r", "1000")
        assert result.returncode == 0, result.stderr
        own = stop_target(target)
    return request.param, own, spyanalyze.load(out)


def assert_measured(label, name, share, samples, own):
    """``share`` of ``samples`` in task ``name`` lies between the target's measures of its work
    and its steps."""
    low, high = own["work"][name], own["shares"][name]
    low -= sampling_margin(low, samples, TOLERANCE)
    high += sampling_margin(high, samples, TOLERANCE)
    assert low <= share <= high, (label, name, share, samples, own)


def stacks_by_names(rec):
    """(qualnames root first, the index of the task frame or None) of every sample."""
    frames = rec.frames
    tuples = rec.stack_table.tuples
    for stack in rec.samples["stack"].tolist():
        names = [frames.at[f, "qualname"] for f in tuples[stack]]
        tasks = [i for i, f in enumerate(tuples[stack]) if frames.at[f, "file"] == TASK_FILE]
        yield names, (tasks[0] if tasks else None)


def test_each_tasks_share_is_the_time_it_ran(tasks_recording):
    label, own, rec = tasks_recording
    table = spyanalyze.views.by_function(rec).set_index(["module", "qualname"])
    for name in ("alpha", "beta"):
        share = table.loc[(TASK_FILE, name), "total_share"]
        assert_measured(label, name, share, len(rec.samples), own)
    ran = {q for m, q in table.index if m == TASK_FILE}
    assert ran == {"alpha", "beta"}, (label, ran)      # the thousand waiting tasks never ran


def test_a_sample_names_the_task_whose_work_it_holds(tasks_recording):
    label, _, rec = tasks_recording
    found = Counter()
    for names, at in stacks_by_names(rec):
        for work in ("alpha_work", "beta_work"):
            if work in names:
                found[work, names[at] if at is not None else None] += 1
                if at is not None:   # just outside the task's coroutine
                    assert names[at + 1] == "busy", (label, names)
    for work, task in (("alpha_work", "alpha"), ("beta_work", "beta")):
        total = sum(n for (w, _), n in found.items() if w == work)
        wrong = total - found[work, task] - found[work, None]
        assert total > 300 and wrong <= WRONG_TASK * total, (label, found)
        assert found[work, None] <= UNNAMED[label] * total, (label, found)


def test_time_by_task_is_the_time_each_task_ran(tasks_recording):
    """``by_task`` and ``spyanalyze top --tasks``: a row per task and coroutine, the shares the
    target measured; the rest (the loop between steps, waiting) in one ``(no task)`` row."""
    label, own, rec = tasks_recording
    table = rec.by_task().set_index("task")
    assert set(table.index) == {"alpha", "beta", "(no task)"}, (label, table)
    for name in ("alpha", "beta"):
        assert table.at[name, "qualname"] == "busy", (label, table)
        assert_measured(label, name, table.at[name, "share"], len(rec.samples), own)
    result = CliRunner().invoke(main, ["top", str(rec.source), "--tasks", "--idle", "include"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {line.split()[2]: line.split() for line in result.output.splitlines()[2:]}
    assert rows["alpha"][3].startswith("busy") and rows["beta"][3].startswith("busy"), result.output
    assert float(rows["alpha"][0].rstrip("%")) > float(rows["beta"][0].rstrip("%")) > 10, result.output


def test_exports_can_put_tasks_where_threads_go(tasks_recording, tmp_path):
    """``export --tasks``: a profile per task, named after it, holding that task's samples."""
    label, _, rec = tasks_recording
    out = tmp_path / "tasks.speedscope.json"
    result = CliRunner().invoke(main, ["export", str(rec.source), "-f", "speedscope", "--tasks",
                                       "--idle", "include", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    profiles = {p["name"]: p for p in document["profiles"]}
    assert {"task alpha", "task beta"} <= set(profiles), (label, sorted(profiles))
    names = [frame["name"] for frame in document["shared"]["frames"]]
    for task, work in (("alpha", "alpha_work"), ("beta", "beta_work")):
        held = [sample for sample in profiles["task " + task]["samples"]
                if work in [names[i] for i in sample]]
        assert len(held) > 0.9 * len(profiles["task " + task]["samples"]) or len(held) > 50, (
            label, task, len(held))
    by_thread = rec.tasks_as_threads().by_thread().set_index("thread")
    assert by_thread.at["task alpha", "samples"] == rec.by_task().set_index("task").at["alpha", "samples"]


@pytest.mark.parametrize("label", ("3.9", "3.13") + ROOTED[-1:])
def test_a_server_s_short_tasks_are_named_in_its_json_generators(label, tmp_path):
    """A JSON service (tests/targets/jsonserver.py): each request runs in a task of its own for a
    few milliseconds, mostly in ``json.dumps``' generators, consumed from C (walks completed
    below them from earlier ones); asyncio is imported after spyrec attached.  The samples in a
    request's ``handle`` and in a ``client`` name their task."""
    out = tmp_path / "server.spy"
    with running_target(python_for(label), "jsonserver.py", "3.5") as target:
        result = spyrec("-q", "-o", out, "-p", target.pid, "-d", "2", "-r", "500")
        assert result.returncode == 0, result.stderr
    rec = spyanalyze.load(out)
    named = Counter()
    for names, at in stacks_by_names(rec):
        for coroutine in ("handle", "client"):
            if coroutine in names:
                task = names[at] if at is not None and names[at + 1] == coroutine else None
                named[coroutine, task is not None and task.startswith(
                    "client-" if coroutine == "client" else "Task-")] += 1
    for coroutine in ("handle", "client"):
        total = named[coroutine, True] + named[coroutine, False]
        assert total > 100 and named[coroutine, True] >= SERVER_TASKS[coroutine] * total, (
            label, named)


@pytest.mark.parametrize("label", ("3.12",) + ROOTED[-1:])
def test_where_says_which_task_runs(label):
    """``spyrec where`` reads the loop's thread once: its state names the task, and its frames
    are the task's without the task's own frame."""
    with running_target(python_for(label), "tasks.py", "20") as target:
        for _ in range(20):
            result = subprocess.run(SPYREC + ["where", "-p", str(target.pid), "--json"],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            (thread,) = json.loads(result.stdout)["threads"]
            assert all(frame["file"] != TASK_FILE for frame in thread["frames"])
            names = [frame["name"] for frame in thread["frames"]]
            if thread["task"] is not None:
                assert thread["task"] in ("alpha", "beta") and "busy" in names, thread
                break
        else:
            pytest.fail("no read found a task running")
