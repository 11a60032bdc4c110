"""Shared fixtures: targets under a given interpreter, and processes attached to them."""

import contextlib

import pytest

from pythons import python_for, running_target
from spyrec.interpreter import PythonProcess


@contextlib.contextmanager
def attached(pid):
    proc = PythonProcess.attach(pid)
    try:
        yield proc
    finally:
        proc.close()


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
