"""A launched command from start to end: its process group, the Python found in it, its stop.

The command may be Python itself (``python app.py``) or start it later: a shell script, ``env``,
``sh -c "...; exec python app.py"``, ``uv run``, a script that runs python as a child.  spyrec
follows the command until a CPython interpreter appears in it (the command's own process after
an exec, or the first process of its tree that is one) and records that process.

The command runs in a process group of its own, which every process it starts joins unless it
leaves it on purpose (a daemon): the group is how its tree is found, however deep, even when a
wrapper has exited and left its children to init, and how the whole tree is stopped.  When the
command is started from the terminal's foreground, the terminal is handed to its group for the
time it runs, so that it reads the terminal and gets Ctrl-C as it would without spyrec (a
background group that reads the terminal is stopped by the kernel).
"""

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time

from spyrec.errors import (LaunchError, NotPython, PermissionDenied, TargetNotFound,
                           UnsupportedPython)
from spyrec.interpreter import PythonProcess

#: How long a launched command has to bring up a Python interpreter before it is stopped.
LAUNCH_ATTACH_TIMEOUT_S = 10.0
#: How long ``find_python`` first waits between looks at the command's processes.
FIRST_LOOK_DELAY_S = 0.001
#: How long ``Launched.held`` waits for the process it stops to be stopped.
HOLD_WAIT_S = 0.5
#: How long a stopped command has between SIGTERM and SIGKILL.
STOP_GRACE_S = 2.0
PR_SET_PDEATHSIG = 1


def exit_status(returncode):
    """``exited with status 3``, or ``was killed by SIGTERM`` (Popen's negative codes)."""
    if returncode is not None and returncode < 0:
        try:
            return "was killed by %s" % signal.Signals(-returncode).name
        except ValueError:
            return "was killed by signal %d" % -returncode
    return "exited with status %s" % returncode


class Launched:
    """A command spyrec started, in its own process group (whose id is the command's PID)."""

    def __init__(self, command, stdout_to_stderr=False):
        try:
            parent = os.getpid()
            self.child = subprocess.Popen(command,
                                          stdout=sys.stderr if stdout_to_stderr else None,
                                          preexec_fn=lambda: _prepare_child(parent))
        except OSError as exc:
            raise LaunchError("cannot start %s: %s" % (command[0], exc.strerror or exc))
        self.name = command[0]
        self.pid = self.pgid = self.child.pid
        self._terminal = _hand_terminal(self.pgid)
        self._previous_sigchld = None
        if self._terminal:
            self._previous_sigchld = signal.signal(signal.SIGCHLD, self._on_child_signal)
        self._ended = False  # waited for or stopped: what it left behind is its own business
        self._held = 0  # the PID of a Python of the command kept stopped (see held)

    def members(self):
        """PIDs of the live (not zombie) processes of the command's group, oldest first."""
        return [pid for _, pid in sorted(_group_members(self.pgid))]

    def find_python(self, should_stop, timeout=LAUNCH_ATTACH_TIMEOUT_S, hold=False):
        """Attach to the first CPython process that appears in the command's tree.

        The processes are tried oldest first each time, so the command itself (after an exec)
        comes before its children, and of several Pythons the one started first is taken.
        Raises LaunchError when the command exits, or ``timeout`` passes, with no Python in it.
        ``hold``: a process whose executable is named as CPython's are is stopped while it is
        attached to, and left stopped when it is the one (see ``held``): attaching reads its
        ELF files, several milliseconds in which the program would otherwise begin.
        """
        deadline = time.monotonic() + timeout
        delay = FIRST_LOOK_DELAY_S
        refused = None  # a process of the tree that is Python but could not be recorded
        while True:
            if should_stop():
                raise LaunchError("interrupted before a Python process appeared in %s"
                                  % self.name)
            exited = self.child.poll() is not None  # before the look: a Python started
            members = self.members()                # just before the exit is still seen
            starting = False  # a Python of the command is not initialised yet
            for pid in members:
                named = hold and _named_python(pid)
                if named:
                    self._hold(pid)
                try:
                    return PythonProcess.attach(pid)
                except (NotPython, TargetNotFound):
                    # Not Python, gone, or just exec'd: the dynamic loader has not mapped
                    # libpython yet, or the runtime is not initialised (tried again next time).
                    starting = starting or named
                except (UnsupportedPython, PermissionDenied) as exc:
                    refused = exc
                self.release()
            if exited and not members:
                raise LaunchError("%s %s before any Python process appeared in it"
                                  % (self.name, exit_status(self.child.returncode)))
            if time.monotonic() > deadline:
                if refused is not None:
                    raise refused
                raise LaunchError("no Python process appeared in %s within %g s; it was stopped"
                                  % (self.name, timeout))
            time.sleep(delay)
            # A Python not yet initialised is looked at again soon: its interpreter is up in
            # milliseconds, and each one waited lets its program run unrecorded.
            delay = FIRST_LOOK_DELAY_S if starting else min(delay * 2, 0.05)

    @contextlib.contextmanager
    def held(self, pid):
        """Keep the command's Python process ``pid`` stopped meanwhile (``find_python`` may
        have stopped it already): the recorder's set-up (the copies' program and events, most
        of all) takes tens of milliseconds, in which a program would otherwise run its first
        moments, its imports, unrecorded.

        Stopped and continued, a program runs as it would have, a little later: a system call
        it was in is resumed (or retried, on EINTR, by CPython itself, PEP 475).
        """
        if self._held != pid:
            self._hold(pid)
        try:
            yield
        finally:
            self.release()

    def _hold(self, pid):
        """Stop ``pid`` (SIGSTOP), and wait until it is: see ``held``."""
        self.release()
        self._held = pid
        try:
            os.kill(pid, signal.SIGSTOP)
            deadline = time.monotonic() + HOLD_WAIT_S
            while _state(pid) not in (b"T", b"") and time.monotonic() < deadline:
                time.sleep(0.0002)
        except OSError:
            pass  # gone: the recording finds it so

    def release(self):
        """Continue the process ``held`` stopped, if any."""
        if self._held:
            try:
                os.kill(self._held, signal.SIGCONT)
            except OSError:
                pass
            self._held = 0

    def wait(self, should_stop):
        """Wait for a command that is ending by itself (its Python exited); return its exit
        code.  A stop asked meanwhile (SIGINT, SIGTERM) stops it instead."""
        while True:
            try:
                code = self.child.wait(0.05)
            except subprocess.TimeoutExpired:
                if should_stop():
                    return self.stop()
                continue
            self._ended = True
            return code

    def stop(self, grace_s=STOP_GRACE_S):
        """Stop the command's whole tree (SIGTERM, then SIGKILL after ``grace_s``); return the
        command's exit code."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
            if self.child.poll() is not None and not _group_members(self.pgid):
                break
            try:
                os.killpg(self.pgid, sig)
                os.killpg(self.pgid, signal.SIGCONT)  # a stopped process acts on it only then
            except OSError:
                pass  # nothing left in the group
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self.child.poll() is not None and not _group_members(self.pgid):
                    break
                time.sleep(0.01)
        self._ended = True
        return self.child.wait()

    def close(self):
        """Stop what still runs if the command was neither waited for nor stopped (a recording
        that could not start, or failed), and give the terminal back.

        A command that ended by itself may leave processes in its group (``server &`` in a
        script): those run on, as they would have without spyrec.
        """
        try:
            self.release()
            if not self._ended:
                self.stop()
        finally:
            if self._previous_sigchld is not None:
                signal.signal(signal.SIGCHLD, self._previous_sigchld)
                self._previous_sigchld = None
            if self._terminal:
                self._terminal = False
                _take_terminal_back()

    def _on_child_signal(self, _signum, _frame):
        """SIGCHLD while the command has the terminal: if it was stopped from it (Ctrl-Z),
        stop spyrec too, as the shell expects of its job, and go on with it once continued.

        The shell only sees spyrec, its job: left running, it would keep waiting for it with
        the command stopped and the terminal in its hands.  So spyrec takes the terminal back
        and stops its own group; when the shell continues it in the foreground (``fg``), the
        command gets the terminal and SIGCONT.
        """
        if self._held or not self._terminal or _state(self.pid) != b"T":
            return
        _take_terminal_back()
        os.killpg(os.getpgrp(), signal.SIGTSTP)
        # continued (fg, bg, or SIGCONT); in the foreground the terminal goes back with it
        self._terminal = _hand_terminal(self.pgid)
        try:
            os.killpg(self.pgid, signal.SIGCONT)
        except OSError:
            pass


def _prepare_child(parent):
    """In the child, before exec: a process group of its own, and SIGTERM when the thread that
    started it ends (spyrec killed with SIGKILL, or crashed), as spyrec itself would send.
    A spyrec that ended before the request was made (``parent`` no longer the parent) sends
    nothing: the child ends at once instead of running the command on its own."""
    os.setpgid(0, 0)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _group_members(pgid):
    """[(start time, pid)] of the live processes whose process group is ``pgid``."""
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # fields after the command name (which may hold spaces and ')'): state is field 3,
        # the process group field 5, the start time field 22
        fields = stat[stat.rfind(b")") + 2:].split()
        try:
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                found.append((int(fields[19]), int(name)))
        except (IndexError, ValueError):
            continue
    return found


def _named_python(pid):
    """Whether the executable of ``pid`` is named as CPython's are (python, python3.12,
    python3.13t), a venv's included (its link resolved)."""
    try:
        name = os.path.basename(os.readlink("/proc/%d/exe" % pid))
    except OSError:
        return False
    return re.fullmatch(r"python[0-9.]*[a-z]?", name) is not None


def _state(pid):
    """The state letter of a process (``T``: stopped), b"" when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return b""
    return stat[stat.rfind(b")") + 2:][:1]


def _hand_terminal(pgid):
    """Make ``pgid`` the terminal's foreground group if ours is (spyrec run from a shell
    prompt); return whether it was done."""
    if threading.current_thread() is not threading.main_thread():
        return False  # giving it back needs a signal handler, which only the main thread sets
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            os.tcsetpgrp(0, pgid)
            return True
    except OSError:
        pass
    return False


def _take_terminal_back():
    """Make our group the terminal's foreground again (from the background: the kernel sends
    SIGTTOU for that, which would stop us, so it is ignored meanwhile)."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(0, os.getpgrp())
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, previous)
