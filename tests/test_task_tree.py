"""``spyrec where --tasks``: every asyncio task, what it awaits and which tasks await it, on
every CPython, read from a real program whose tasks wait for each other in known ways
(tests/targets/task_tree.py, its ``# @`` marks naming the lines they wait on)."""

import json
import subprocess
import sys

import pytest

from pythons import EVERY_VERSION, marked_lines, minor_of, python_for, running_target, target_path

SPYREC = [sys.executable, "-m", "spyrec"]
MARKS = marked_lines(target_path("task_tree.py"))


def where_tasks(pid, *options):
    result = subprocess.run(SPYREC + ["where", "-p", str(pid), "--tasks", *options],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module", params=EVERY_VERSION)
def read_twice(request):
    """(label, target pid, the JSON report, the text report) of one target."""
    with running_target(python_for(request.param), "task_tree.py") as target:
        return (request.param, target.pid, json.loads(where_tasks(target.pid, "--json")),
                where_tasks(target.pid))


def by_name(report):
    tasks = {task["name"]: task for task in report["tasks"]}
    main = [task for task in report["tasks"] if [f["name"] for f in task["frames"]] == ["main"]]
    assert len(main) == 1, report["tasks"]
    tasks["main"] = main[0]
    return tasks


def test_each_task_is_where_it_waits_and_waits_for_what_it_awaits(read_twice):
    label, pid, report, _ = read_twice
    tasks = by_name(report)
    assert {"parent", "child", "gatherer", "worker-1", "worker-2", "ping", "pong",
            "spinner"} <= set(tasks), label
    child = tasks["child"]
    names = [frame["name"] for frame in child["frames"]]
    assert names == ["wait", "leaf", "middle"], (label, child)
    assert [frame["line"] for frame in child["frames"][1:]] == [MARKS["leaf"], MARKS["middle"]]
    assert child["frames"][0]["file"].endswith("asyncio/locks.py")
    for name in ("parent", "gatherer", "main", "ping"):
        frame = tasks[name]["frames"][-1]
        assert (frame["name"], frame["line"]) == (
            "one_of_a_pair" if name == "ping" else name,
            MARKS["pair" if name == "ping" else name]), (label, name, tasks[name])
    assert [frame["line"] for frame in tasks["worker-1"]["frames"][1:]] == [MARKS["worker"]]
    assert child["awaits"] == tasks["worker-1"]["awaits"] == "_asyncio.Future"
    assert tasks["parent"]["awaits"] == 'Task "child"'
    assert tasks["ping"]["awaits"] == 'Task "pong"'
    assert tasks["gatherer"]["awaits"] == tasks["main"]["awaits"] == "_GatheringFuture"
    assert not tasks["spinner"]["awaited_by"] and not tasks["main"]["awaited_by"]
    if tuple(map(int, minor_of(label).split("."))) >= (3, 14):  # the thread it was made in
        assert {task["thread"] for task in report["tasks"]} == {pid}


def test_each_task_knows_who_awaits_it(read_twice):
    label, _, report, _ = read_twice
    tasks = by_name(report)
    awaited_by = {name: sorted(task["awaited_by"]) for name, task in tasks.items()}
    assert awaited_by["child"] == [tasks["parent"]["id"]], label
    assert awaited_by["worker-1"] == awaited_by["worker-2"] == [tasks["gatherer"]["id"]]
    assert awaited_by["parent"] == awaited_by["gatherer"] == [tasks["main"]["id"]]
    assert awaited_by["ping"] == [tasks["pong"]["id"]] and awaited_by["pong"] == [tasks["ping"]["id"]]


def test_a_task_group_s_tasks_are_under_the_task_that_waits_for_them(read_twice):
    label, _, report, _ = read_twice
    tasks = by_name(report)
    if tuple(map(int, minor_of(label).split("."))) < (3, 11):  # no TaskGroup: no such tasks
        assert not {"grouper", "grouped-1", "grouped-2"} & set(tasks)
        return
    grouper = tasks["grouper"]
    assert grouper["frames"][0]["qualname"] in ("TaskGroup.__aexit__", "TaskGroup._aexit")
    assert (grouper["frames"][-1]["name"], grouper["frames"][-1]["line"]) == \
        ("grouped", MARKS["group"]), (label, grouper)
    assert tasks["grouped-1"]["awaited_by"] == tasks["grouped-2"]["awaited_by"] == [grouper["id"]]


def test_the_text_shows_each_task_under_its_awaiter_and_the_cycle(read_twice):
    label, _, _, text = read_twice
    lines = text[text.index("asyncio tasks ("):].splitlines()
    depth = {line.strip().split('"')[1]: (len(line) - len(line.lstrip())) // 4
             for line in lines if line.lstrip().startswith("Task ")}
    assert depth["child"] == 2 and depth["parent"] == 1 and depth["worker-2"] == 2, (label, text)
    child = next(i for i, line in enumerate(lines) if line.lstrip().startswith('Task "child"'))
    assert lines[child].endswith("waiting for _asyncio.Future")
    leaf = lines[child + 2].strip()
    assert leaf.startswith("leaf (") and leaf.endswith("/task_tree.py:%d)" % MARKS["leaf"])
    assert any(line.strip().endswith("awaits a task above it, a cycle") for line in lines)


def test_a_process_without_asyncio_says_so():
    with running_target(python_for("3.12"), "one_busy.py", "30", "1") as target:
        text = where_tasks(target.pid)
    assert text.rstrip().endswith("no asyncio tasks: asyncio is not imported")
