"""The interpreters the tests run targets under, declared once.

Labels are ``"3.8"`` ... ``"3.13"`` (pyenv builds: shared libpython, PIE exe), plus
``"3.11-debian"`` (Debian's static, non-PIE /usr/bin/python3.11 with .symtab stripped) and
``"venv"`` (a venv made on the fly from the newest supported pyenv python; its ``python`` is a
symlink).  ``python_for(label)`` returns an executable or calls ``pytest.skip`` with the path it
looked for, so ``pytest -ra`` lists every interpreter that was not tested.

``running_target(python, script, *args)`` starts a target script, waits for the single JSON line
it prints once it is in place (its own ground truth: pid, thread idents, native TIDs...), yields
it, and always kills the process.
"""

import contextlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence

import pytest

#: CPython minors spyrec walks, and those it must refuse with a clear message.
SUPPORTED = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")
UNSUPPORTED = ("3.6", "3.7")
#: Extra builds worth testing separately.
EXTRAS = ("3.11-debian", "venv")
DEBIAN_PYTHON = "/usr/bin/python3.11"
VENV_BASE = "3.12"

TARGETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "targets")


def pyenv_root() -> str:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = ""
    return root or os.path.expanduser("~/.pyenv")


def _pyenv_python(minor: str) -> str:
    """Newest installed ``<pyenv root>/versions/<minor>.*/bin/python3`` (or its expected path)."""
    versions = os.path.join(pyenv_root(), "versions")
    best = None
    if os.path.isdir(versions):
        for name in os.listdir(versions):
            m = re.fullmatch(re.escape(minor) + r"\.(\d+)", name)
            if m and (best is None or int(m.group(1)) > best[0]):
                best = (int(m.group(1)), name)
    return os.path.join(versions, best[1] if best else minor + ".*", "bin", "python3")


def _venv_python() -> str:
    """A venv made from the VENV_BASE pyenv python, cached in the temp dir across runs."""
    base = _pyenv_python(VENV_BASE)
    if not os.path.exists(base):
        return base
    where = os.path.join(tempfile.gettempdir(), "spyrec-test-venv-%s-%d" % (VENV_BASE, os.getuid()))
    python = os.path.join(where, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([base, "-m", "venv", "--without-pip", where], check=True, timeout=60)
    return python


def interpreter_path(label: str) -> str:
    if label == "3.11-debian":
        return DEBIAN_PYTHON
    if label == "venv":
        return _venv_python()
    return _pyenv_python(label)


def python_for(label: str) -> str:
    """The interpreter for ``label``; skips the calling test when it is not installed."""
    path = interpreter_path(label)
    if not os.path.exists(path):
        pytest.skip("python%s not installed: %s" % (label, path))
    return path


def minor_of(label: str) -> str:
    """``"3.11-debian"`` -> ``"3.11"``; ``"venv"`` -> its base minor."""
    return VENV_BASE if label == "venv" else label.split("-")[0]


ALL_SUPPORTED = SUPPORTED + EXTRAS


def target_path(name: str) -> str:
    return os.path.join(TARGETS, name)


def marked_lines(path: str) -> Dict[str, int]:
    """``{"spin": 42, ...}`` for every ``# @spin`` marker comment in a source file."""
    marks = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            for mark in re.findall(r"#\s*@([\w-]+)", line):
                marks[mark] = number
    return marks


class Target(NamedTuple):
    pid: int
    info: dict  # the JSON line the target printed
    process: subprocess.Popen


@contextlib.contextmanager
def running_target(python: str, script: str, *args: str, timeout: float = 15.0,
                   env: Optional[dict] = None, prefix: Sequence[str] = ()) -> Iterator[Target]:
    """Start ``python script args...``; yield once it printed its JSON ready line; kill it.

    ``prefix`` runs the target under a wrapper (e.g. ``unshare --pid --fork``); ``Target.pid``
    is then the wrapper's PID and ``Target.info["pid"]`` what the target sees.
    """
    cmd: List[str] = list(prefix) + [python, "-u",
                                     target_path(script) if not os.path.isabs(script) else script]
    cmd += [str(a) for a in args]
    full_env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8")
    full_env.pop("PYTHONPATH", None)
    full_env.update(env or {})
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    try:
        line = _read_line(proc, timeout)
        if not line:
            err = proc.stderr.read().decode("utf-8", "replace") if proc.poll() is not None else ""
            raise RuntimeError("target %s gave no ready line: %s" % (" ".join(cmd), err[-2000:]))
        info = json.loads(line)
        yield Target(proc.pid, info, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()


def _read_line(proc: subprocess.Popen, timeout: float) -> bytes:
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None and not select.select([fd], [], [], 0)[0]:
            return b""
        ready, _, _ = select.select([fd], [], [], min(left, 0.1))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b""
            buf += chunk
    return buf.split(b"\n", 1)[0]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.005):
    """Call ``predicate()`` until it returns something truthy; return it, or the last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
