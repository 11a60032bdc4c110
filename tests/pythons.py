"""The interpreters the tests run targets under, declared once.

Labels are ``"3.8"`` ... ``"3.13"`` (pyenv builds: shared libpython, PIE exe), ``"3.14"`` and
``"3.15"`` (Debian sid's static, non-PIE ``/usr/bin/python3.1X``, which need a newer glibc than
this machine's and so run in the sid root that scripts/make-sid-root.sh prepares: started as
``chroot ROOT python3.1X``, like a process in a container), plus ``"3.11-debian"`` (Debian's
static /usr/bin/python3.11 with .symtab stripped) and ``"venv"`` (a venv made on the fly from a
pyenv python; its ``python`` is a symlink).  ``python_for(label)`` returns an executable or
calls ``pytest.skip`` with what it looked for, so ``pytest -ra`` lists every interpreter that
was not tested.

``running_target(python, script, *args)`` starts a target script, waits for the single JSON line
it prints once it is in place (its own ground truth: pid, thread idents, native TIDs...), yields
it, and always kills the process.  For an interpreter in a root it first copies the targets into
``ROOT/tmp/spyrec-targets-<hash>/`` (``Target.targets_dir`` is that directory as the target sees
it, ``Target.root`` the root, for opening files the target names).
"""

import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import pytest

#: CPython minors spyrec walks (host interpreters), and those it must refuse clearly.
SUPPORTED = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")
UNSUPPORTED = ("3.6", "3.7")
#: Minors whose interpreters run in the sid root (chroot): newer than this machine's glibc.
ROOTED = ("3.14", "3.15")
#: Extra builds worth testing separately.
EXTRAS = ("3.11-debian", "venv")
DEBIAN_PYTHON = "/usr/bin/python3.11"
VENV_BASE = "3.12"
#: Where scripts/make-sid-root.sh puts the root (it prints the path it used).
DEFAULT_SID_ROOT = "/var/cache/spyrec/sid-root"

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


class RootedPython(str):
    """An interpreter inside a root directory: the str is its path as seen inside the root
    (``/usr/bin/python3.15``); ``running_target`` starts it as ``chroot ROOT PATH``."""

    root: str

    def __new__(cls, path: str, root: str) -> "RootedPython":
        self = super().__new__(cls, path)
        self.root = root
        return self

    @property
    def host_path(self) -> str:
        return self.root + self


def sid_root() -> str:
    return os.environ.get("SPYREC_SID_ROOT") or DEFAULT_SID_ROOT


def _rooted_python(label: str) -> RootedPython:
    """``python3.1X`` in the sid root; skips (saying what is missing) when it cannot run."""
    root = sid_root()
    python = RootedPython("/usr/bin/python" + label, root)
    if not os.path.isdir(root):
        why = "no sid root at %s (scripts/make-sid-root.sh builds it)" % root
    elif not os.path.exists(python.host_path):
        why = "%s missing (scripts/make-sid-root.sh installs it)" % python.host_path
    elif not os.path.exists(os.path.join(root, "proc", "self")):
        why = "%s/proc is not mounted (scripts/make-sid-root.sh mounts it)" % root
    elif os.geteuid() != 0:
        why = "starting it with chroot needs root"
    else:
        return python
    pytest.skip("python%s not available: %s" % (label, why))


def interpreter_path(label: str) -> str:
    if label == "3.11-debian":
        return DEBIAN_PYTHON
    if label == "venv":
        return _venv_python()
    if label in ROOTED:
        return RootedPython("/usr/bin/python" + label, sid_root())
    return _pyenv_python(label)


def python_for(label: str) -> str:
    """The interpreter for ``label``; skips the calling test when it is not installed.

    For a ``ROOTED`` label this is a ``RootedPython`` (run it through ``running_target``).
    """
    if label in ROOTED:
        return _rooted_python(label)
    path = interpreter_path(label)
    if not os.path.exists(path):
        pytest.skip("python%s not installed: %s" % (label, path))
    return path


def shared_libpython(python: str) -> Optional[str]:
    """The shared libpython a host interpreter loads (its ``LIBDIR``/``INSTSONAME``), or None
    (a static build, or no such file)."""
    path = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR') + '/' "
         "+ (sysconfig.get_config_var('INSTSONAME') or ''))"],
        capture_output=True, text=True).stdout.strip()
    return path if os.path.isfile(path) else None


def minor_of(label: str) -> str:
    """``"3.11-debian"`` -> ``"3.11"``; ``"venv"`` -> its base minor."""
    return VENV_BASE if label == "venv" else label.split("-")[0]


ALL_SUPPORTED = SUPPORTED + ROOTED + EXTRAS
#: Every way of keeping frames, each once: the tests of what a recording holds (generators'
#: callers, tasks, names, GC marks, wait causes).  3.9 keeps 3.8's frame objects and line
#: tables; like the extra builds, it is taken by the tests of finding, attaching to and walking
#: an interpreter (ALL_SUPPORTED), its layout checked against its debug information
#: (tests/test_layouts.py), and its generators compared with py-spy's.  Debian's static 3.11
#: takes the tests of native frames, whose symbols lie in its executable (EVERY_BUILD).
EVERY_VERSION = tuple(label for label in SUPPORTED + ROOTED if label != "3.9")
EVERY_BUILD = EVERY_VERSION + ("3.11-debian",)
#: One version of each way of keeping frames: frame objects (3.8) and datastack chunks (3.12).
#: For the tests of what the recorder does with what it has read (CPU time, wait causes,
#: threads kept or read again, threads and code objects that come and go), the same whatever
#: the version: the tests of reading each version's stacks, names and states run on every one,
#: 3.13-3.15's through their debug offsets among them.
SOME_VERSIONS = ("3.8", "3.12")


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
    targets_dir: str = TARGETS  # tests/targets as the target sees it
    root: str = "/"  # the target's root directory

    def host_path(self, path: str) -> str:
        """A path the target names (e.g. a co_filename), openable by the test."""
        return path if self.root == "/" else self.root + path


def stage_targets(root: str) -> str:
    """Copy tests/targets into ``ROOT/tmp/spyrec-targets-<hash>/`` (once per content); return
    that directory as seen inside the root."""
    names = sorted(n for n in os.listdir(TARGETS) if n.endswith(".py"))
    digest = hashlib.sha256()
    for name in names:
        with open(os.path.join(TARGETS, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    inside = "/tmp/spyrec-targets-%s" % digest.hexdigest()[:12]
    where = root + inside
    if not os.path.isdir(where):
        partial = "%s.%d" % (where, os.getpid())
        os.makedirs(partial, exist_ok=True)
        for name in names:
            shutil.copy2(os.path.join(TARGETS, name), partial)
        try:
            os.rename(partial, where)
        except OSError:  # another test run staged it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
    return inside


def _mirror_paths(root: str, args: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Host paths among ``args`` (absolute, in an existing host directory): make the same
    directory in the root, so the target can use the path unchanged.  Returns those paths and
    the directories made for them (deepest first), to remove afterwards."""
    mirrored: List[str] = []
    made: List[str] = []
    for arg in args:
        if os.path.isabs(arg) and os.path.isdir(os.path.dirname(arg)) \
                and not arg.startswith(root + "/"):
            missing = []
            where = root + os.path.dirname(arg)
            while not os.path.isdir(where):
                missing.append(where)
                where = os.path.dirname(where)
            os.makedirs(root + os.path.dirname(arg), exist_ok=True)
            made += missing
            if os.path.isfile(arg):
                shutil.copy2(arg, root + arg)
            mirrored.append(arg)
    return mirrored, made


@contextlib.contextmanager
def running_target(python: str, script: str, *args: str, timeout: float = 15.0,
                   env: Optional[dict] = None, prefix: Sequence[str] = ()) -> Iterator[Target]:
    """Start ``python script args...``; yield once it printed its JSON ready line; kill it.

    ``prefix`` runs the target under a wrapper (e.g. ``unshare --pid --fork``); ``Target.pid``
    is then the wrapper's PID and ``Target.info["pid"]`` what the target sees.

    A ``RootedPython`` runs as ``chroot ROOT python``, on the staged copy of the targets; an
    argument naming a file in a host directory (e.g. a log in pytest's tmp_path) gets the same
    path inside the root, and the file is copied back to the host when the target ends.
    """
    args = [str(a) for a in args]
    root = getattr(python, "root", "/")
    targets_dir, mirrored, made = TARGETS, [], []
    if root != "/":
        targets_dir = stage_targets(root)
        if os.path.isabs(script):
            if os.path.dirname(script) != TARGETS:
                raise ValueError("only tests/targets scripts run in a root: %s" % script)
            script = os.path.basename(script)
        mirrored, made = _mirror_paths(root, args)
        prefix = list(prefix) + ["chroot", root]
    script_path = os.path.join(targets_dir, script) if not os.path.isabs(script) else script
    cmd: List[str] = list(prefix) + [str(python), "-u", script_path] + args
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
        yield Target(proc.pid, info, proc, targets_dir, root)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        for path in mirrored:
            if os.path.isfile(root + path):
                shutil.move(root + path, path)
        for directory in made:
            with contextlib.suppress(OSError):  # left alone if the target put more there
                os.rmdir(directory)


def launch_argv(python: str, script: str, *args: str) -> List[str]:
    """The command that runs ``python`` on the target ``script`` (tests/targets), for a
    recorder to launch: ``chroot ROOT python`` on the staged copy for a ``RootedPython``."""
    root = getattr(python, "root", "/")
    if root == "/":
        return [str(python), os.path.join(TARGETS, script)] + list(args)
    return ["chroot", root, str(python), os.path.join(stage_targets(root), script)] + list(args)


def stop_target(target: Target, timeout: float = 30.0) -> dict:
    """End the run of a target that stops on SIGUSR1 (``_truth.stop_on_signal``) rather than wait
    out its DURATION; return the JSON line it prints last, with what it measured."""
    target.process.send_signal(signal.SIGUSR1)
    printed, _ = target.process.communicate(timeout=timeout)
    return json.loads(printed.decode().strip().splitlines()[-1])


def next_json_line(target: Target, timeout: float = 10.0) -> dict:
    """The next JSON line a running target prints after its ready line."""
    line = _read_line(target.process, timeout)
    if not line:
        raise RuntimeError("target %d printed no line in %.0f s" % (target.pid, timeout))
    return json.loads(line)


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


def exited(pid: int) -> bool:
    """The process has exited (a zombie its parent has not reaped yet counts as exited)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def round_cpu_costs(patch) -> List[int]:
    """A list to which every ``Sampler.sample_round`` from now on adds the CPU time it took
    (ns, the sampling thread's: wall time would also tell how busy the machine is).
    ``patch(obj, name, value)`` installs the spy: ``monkeypatch.setattr``, or ``setattr``."""
    from spyrec.sampler import Sampler
    costs: List[int] = []
    sample_round = Sampler.sample_round

    def timed_round(sampler, now):
        start = time.thread_time_ns()
        sample_round(sampler, now)
        costs.append(time.thread_time_ns() - start)

    patch(Sampler, "sample_round", timed_round)
    return costs


def spyrec_stacks(path, lines: bool = False) -> List[list]:
    """A recording's busy samples as stacks of function names from the root, one per sample
    (with ``lines``, of (name, line) pairs)."""
    import spyanalyze

    rec = spyanalyze.load(path).filter(idle="exclude")
    names = rec.frames["name"].tolist()
    if lines:
        names = list(zip(names, rec.frames["line"].tolist()))
    return [[names[f] for f in rec.stacks["frames"][s]] for s in rec.samples["stack"].tolist()]


def py_spy_stacks(path, lines: bool = False) -> List[list]:
    """py-spy's ``--format raw`` output as stacks of function names from the root, one per
    sample (py-spy names functions by qualified name from 3.11 on: the last part is kept);
    with ``lines``, of (name, line) pairs."""
    stacks: List[list] = []
    with open(path, encoding="utf-8", errors="replace") as raw:
        for line in raw.read().splitlines():
            text, count = line.rsplit(" ", 1)
            frames = text.split(";")
            names = [frame.split(" (")[0].rsplit(".", 1)[-1] for frame in frames]
            if lines:
                numbers = [frame.rsplit(":", 1)[-1].rstrip(")") for frame in frames]
                names = [(name, int(n) if n.isdigit() else 0) for name, n in zip(names, numbers)]
            stacks += [names] * int(count)
    return stacks


def live_view_in_terminal(argv, shows, timeout=15.0):
    """Run ``argv`` on a new pseudo-terminal until its screen ``shows(output so far)``, then
    press q.  Returns (all it showed, seconds until it showed that, its exit status, seconds
    from q to its end)."""
    import pty
    started = time.monotonic()
    child, terminal = pty.fork()
    if child == 0:
        os.execv(argv[0], argv)
    shown = read_terminal(terminal, shows, timeout)
    seen_after = time.monotonic() - started
    os.write(terminal, b"q")
    pressed = time.monotonic()
    shown += read_terminal(terminal, lambda shown: False, 5)
    _, status = os.waitpid(child, 0)
    return shown, seen_after, status, time.monotonic() - pressed


def read_terminal(terminal, done=lambda shown: False, timeout=30.0) -> bytes:
    """What a pseudo-terminal's other side shows (``terminal``: its master end), until
    ``done(shown)``, the end of its output, or ``timeout`` seconds."""
    import select
    shown = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not done(shown):
        ready, _, _ = select.select([terminal], [], [], 0.05)
        if ready:
            try:
                data = os.read(terminal, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            shown += data
    return shown
