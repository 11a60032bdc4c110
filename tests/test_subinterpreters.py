"""A thread that calls into another interpreter (3.12+; 3.14's concurrent.interpreters and
InterpreterPoolExecutor) has a thread state in each: it must be sampled once a round, as one
stack, the frames it runs in the other interpreter above the call that took it there."""

import pytest

from pythons import EVERY_VERSION, minor_of, python_for, running_target
from test_record import Stacks, load, spyrec
from test_stack_copies import copied_count

LABELS = [label for label in EVERY_VERSION if tuple(map(int, minor_of(label).split("."))) >= (3, 12)]


@pytest.mark.parametrize("label", LABELS)
def test_a_thread_working_in_another_interpreter_is_one_stack_a_round(label, tmp_path):
    out = tmp_path / "sub.spy"
    with running_target(python_for(label), "subinterpreters.py", "6") as target:
        result = spyrec("-o", out, "-p", target.pid, "-d", "1.5", "-r", "200")
        assert result.returncode == 0, result.stderr
    rec = load(out)
    stacks = Stacks(rec)
    main, caller = target.info["main"]["native_id"], target.info["threads"]["caller"]["native_id"]
    # named as the program named it, not as the other interpreter's main thread
    assert rec.threads[(target.info["pid"], caller)]["name"] == "caller", label
    ours, theirs = stacks.of_thread(caller), stacks.of_thread(main)
    # one sample a round, as for the main thread (twice as many before: one per thread state)
    assert len(theirs) >= 150 and abs(len(ours) - len(theirs)) <= 2, (label, len(ours), len(theirs))
    # each of them the whole stack: the thread's start, the call, then the other interpreter's
    # frames above it
    whole = 0
    for stack in ours:
        names = [qualname for qualname, _, _ in stack]
        if "sub_work" in names and "call_into" in names and stack[-1][1] == "threading.py" \
                and names.index("sub_work") < names.index("call_into"):
            whole += 1
    assert whole >= 0.95 * len(ours), (label, whole, len(ours), stacks.most_common(caller))
    # the main thread, in the main interpreter alone, is copied at interrupts as in any
    # program (the caller, with a state in each, is read from outside)
    assert copied_count(result.stderr) >= 0.7 * len(theirs), (label, result.stderr)
