"""``spyrec -C``: the target's Python descendants recorded into the same file.

The family target (tests/targets/family.py) starts its children after the recorder attached:
a multiprocessing Pool of 4 (fork and spawn), plain ``os.fork()`` children, and a child running
another CPython next to a process that is no Python.  Each child spins in a function of its
own and the target says which; the recording must hold each child under its own pid, busy in
that function, with its parent and Python version, and note the process it skipped.
"""

import json
from collections import Counter

import pytest

import spyanalyze
from pythons import python_for, running_target
from test_record import spyrec

#: Share of a child's busy samples that must be in its own function.
OWN_FUNCTION = 0.9


def record_family(label, mode, tmp_path, *extra):
    out = tmp_path / ("%s.spy" % mode)
    with running_target(python_for(label), "family.py", mode, "2", *extra) as target:
        result = spyrec("-C", "-q", "-o", out, "-p", target.pid, "-d", "6", "-r", "500")
        assert result.returncode == 0, result.stderr
        printed, _ = target.process.communicate(timeout=30)
    children = json.loads(printed.decode().strip().splitlines()[-1])["children"]
    return target, {int(pid): function for pid, function in children.items()}, spyanalyze.load(out)


def busy_functions(rec, pid):
    """How many of ``pid``'s busy samples have each function on their stack, and how many
    busy samples it has."""
    samples = rec.samples[(rec.samples["pid"] == pid) & ~rec.samples["idle"]]
    names = rec.frames["qualname"]
    counts = Counter()
    for stack in samples["stack"].tolist():
        counts.update({names.at[f] for f in rec.stack_table.tuples[stack]})
    return counts, len(samples)


def process_record(rec, pid):
    rows = rec.processes[rec.processes["pid"] == pid]
    assert len(rows) == 1, (pid, rec.processes)
    return rows.iloc[0]


def ancestors(rec, pid):
    """The recorded parents of ``pid``, nearest first."""
    found = []
    while True:
        parent = process_record(rec, pid)["ppid"]
        if parent is None or parent != parent:  # none: the target (NaN in a float column)
            return found
        found.append(int(parent))
        pid = int(parent)


def check_children(label, target, children, rec):
    for pid, function in children.items():
        counts, busy = busy_functions(rec, pid)
        assert busy > 100, (label, pid, function, busy)
        assert counts[function] >= OWN_FUNCTION * busy, (label, pid, function, counts.most_common(4))
        record = process_record(rec, pid)
        # (a forkserver's workers are its children, and it the target's)
        assert target.pid in ancestors(rec, pid), (label, record.to_dict())
        assert record["python_version"] == target.info["python"]
    # the target itself is recorded as ever, and no sample of it is in a child's function
    counts, _ = busy_functions(rec, target.pid)
    assert not any(counts[f] for f in children.values()), counts


#: Every way a pool starts its workers under 3.12, and 3.8's workers started as new interpreters.
POOLS = [("3.12", mode) for mode in ("pool-fork", "pool-spawn", "pool-forkserver")] + [
    ("3.8", "pool-spawn")]


@pytest.mark.parametrize("label,mode", POOLS)
def test_each_pool_worker_is_recorded_under_its_own_pid(label, mode, tmp_path):
    target, children, rec = record_family(label, mode, tmp_path)
    assert len(children) == 4 and len(set(children.values())) == 4
    check_children(label, target, children, rec)


@pytest.mark.parametrize("label", ["3.11", "3.13"])
def test_children_forked_after_the_recorder_attached_are_found(label, tmp_path):
    target, children, rec = record_family(label, "fork", tmp_path)
    assert len(children) == 2
    check_children(label, target, children, rec)


def test_a_child_running_another_python_and_one_that_is_no_python(tmp_path):
    other = python_for("3.9")
    target, children, rec = record_family("3.12", "other", tmp_path, other)
    (python_child,) = [pid for pid, function in children.items() if function]
    (sleeper,) = [pid for pid, function in children.items() if not function]
    counts, busy = busy_functions(rec, python_child)
    assert busy > 100 and counts["hot_0"] >= OWN_FUNCTION * busy, counts.most_common(3)
    record = process_record(rec, python_child)
    assert record["python_version"].startswith("3.9.") and record["ppid"] == target.pid
    skipped = process_record(rec, sleeper)
    assert skipped["skipped"] == "not a Python process" and skipped["ppid"] == target.pid
    assert not (rec.samples["pid"] == sleeper).any()
    table = rec.by_process().set_index("pid")
    assert table.at[sleeper, "skipped"] == "not a Python process"
    assert table.at[python_child, "python"].startswith("3.9.")
    assert table.at[target.pid, "ppid"] is None


def test_a_child_that_execs_another_python_is_followed_into_it(tmp_path):
    """A forked 3.12 child busy in ``hot_1`` execs 3.9, busy in ``hot_0``: both halves are
    recorded under its pid, and its record ends with the Python it runs last."""
    target, children, rec = record_family("3.12", "exec", tmp_path, python_for("3.9"))
    (child,) = children
    counts, busy = busy_functions(rec, child)
    assert counts["hot_1"] > 50 and counts["hot_0"] > 50, counts.most_common(4)
    assert counts["hot_1"] + counts["hot_0"] >= OWN_FUNCTION * busy, counts.most_common(4)
    assert process_record(rec, child)["python_version"].startswith("3.9.")
