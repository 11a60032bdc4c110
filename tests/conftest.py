"""Shared fixtures: targets under a given interpreter, and processes attached to them."""

import compileall
import contextlib
import os

import pytest

from pythons import python_for, running_target
from spyrec.interpreter import PythonProcess


def pytest_sessionstart(session):
    """Compile the packages to bytecode once: the tests start spyrec and spyanalyze hundreds of
    times, and where PYTHONDONTWRITEBYTECODE is set (as on this machine and CI) each start
    compiled every module it imports anew, a tenth of a second or more of each recorder's start."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for package in ("spyformat", "spyrec", "spyanalyze"):
        compileall.compile_dir(os.path.join(root, package), quiet=2)


@contextlib.contextmanager
def attached(pid):
    proc = PythonProcess.attach(pid)
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture(scope="session")
def split_with_sleeper(tmp_path_factory):
    """tests/targets/split.py at 75/25 for 2 s of CPU with its sleeper thread, recorded at 200 Hz:
    (path, the target's own measurement).  Recorded once for the modules that only read it
    (test_analyze_real, test_analyze_plot): each loads a Recording of its own."""
    from test_analyze_support import record_split
    return record_split(tmp_path_factory.mktemp("split"), 0.75, 2.0, 200, ("--sleeper",))


@pytest.fixture
def target_under():
    """``target_under(label, script, *args)``: start a target, attach, yield (target, proc)."""
    stack = contextlib.ExitStack()

    def start(label, script, *args):
        target = stack.enter_context(running_target(python_for(label), script, *args))
        proc = stack.enter_context(attached(target.pid))
        return target, proc

    with stack:
        yield start
