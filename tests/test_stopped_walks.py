"""Walks of a recursion of generators, the program stopped and running, under every CPython.

tests/targets/visitor.py visits a tree through recursive generators whose leaves call a short
``work``: every ``work`` lies under exactly as many ``visit`` frames as the tree is deep, and
generator frames of one code are made and freed at every level all the time.  Walks of the
program stopped (SIGSTOP: tests/stopped.py) must give exactly those stacks; walks of it running
must give them too, where reading it apart in time allows (docs/benchmarks.md, "Running walks
next to walks of the stopped program").
"""

import pytest

from conftest import attached
from pythons import EVERY_VERSION, minor_of, python_for, running_target
from stopped import alternate_walks, wrong_visit

WALKS = 1500
#: 3.11/3.12 call some walks of the stopped program torn: a frame the innermost one is calling
#: into lies on top of the chunk before its link is set (1.9-2.4% on the bench).
STOPPED_TORN_3_11_3_12 = 0.04
#: Running walks with a wrong stack that 3.11+ may give: 0.8-2.9% of them in ten runs of
#: this test's walks on 3.11, 1.2-2.4% in six on 3.12, up to 3.7% in a run of the suite
#: (without copies the walks read a stack that changes every microsecond).
WRONG_RUNNING = 0.05
#: <=3.10 read each frame object on its own, a microsecond or more apart, while frames of this
#: recursion are freed and made again at the same addresses for other levels.
HEAP_FRAMES = ("3.8", "3.9", "3.10")



@pytest.mark.parametrize("label", EVERY_VERSION)
def test_a_recursion_of_generators_is_walked_whole(label):
    python = python_for(label)
    with running_target(python, "visitor.py", "60") as target:
        visits = target.info["visits"]
        with attached(target.pid) as process:
            process.sample_threads()
            seen = alternate_walks(process, target.pid, WALKS)
    stopped, stopped_torn, unsent = seen["stopped"]
    running, _, _ = seen["running"]
    total = sum(stopped.values())
    bad = {walk: n for walk, n in stopped.items() if wrong_visit(walk, visits)}
    assert not bad, (label, bad)
    # Every link from a generator's frame of the stopped program is one its caller made by
    # resuming it: the check that cuts a running walk's links to freed frames never fails here.
    assert unsent == 0, (label, unsent, total)
    assert any("work" in walk[0] for walk in stopped), (label, stopped.most_common(3))
    allowed = STOPPED_TORN_3_11_3_12 if minor_of(label) in ("3.11", "3.12") else 0
    assert stopped_torn <= allowed * total, (label, stopped_torn, total)

    wrong_running = sum(n for walk, n in running.items() if wrong_visit(walk, visits))
    if minor_of(label) in HEAP_FRAMES and wrong_running > WRONG_RUNNING * sum(running.values()):
        pytest.xfail("%s: %d of %d running walks with levels lost or repeated (frames of one "
                     "code freed and made again at the same addresses between reads)"
                     % (label, wrong_running, sum(running.values())))
    assert wrong_running <= WRONG_RUNNING * sum(running.values()), (
        label, wrong_running, sorted(running.items(), key=lambda kv: -kv[1])[:5])
