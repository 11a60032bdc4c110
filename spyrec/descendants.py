"""Following a target's descendants (``spyrec -C``): every Python process started under it,
recorded into the same file from when it appears to when it ends.

The tree is read from ``/proc/PID/task/TID/children`` (the kernel's list of each thread's
children) a few times a second, from the target down, so a worker forked or spawned by a
worker is found too.  A new process is attached as the target was; one that is not Python yet
(just forked by a shell, or exec'ing an interpreter that has not initialised) is tried again at
each look until ``PYTHON_WAIT_NS`` passes with the same program, and is then noted in a
PROCESS record with the reason it is skipped.  A descendant that replaces its program (exec)
is attached again as the new program.  Each descendant is sampled by a ``Sampler`` of its own,
in the target's rounds, into the target's sink and statistics.
"""

import os
from typing import Callable, Dict, List, Optional, Protocol, Set, Tuple

from spyrec.errors import (NotPython, PermissionDenied, TargetNotFound, TargetReplaced,
                           UnsupportedPython)
from spyrec.interpreter import PythonProcess
from spyrec.process import read_cmdline, read_cwd
from spyrec.sinks import Sink


class Sampler(Protocol):
    """What is asked of a descendant's sampler (``spyrec.sampler.Sampler``)."""

    process: PythonProcess
    woke: bool
    target_running: int
    due_ns: Optional[int]

    def sample_round(self, now: int) -> None: ...

    def finish(self, end_ns: Optional[int] = None) -> None: ...

#: How often the process tree is read for new descendants.
DISCOVER_EVERY_NS = 100_000_000
#: How long a descendant may run one program without becoming a Python that can be attached.
PYTHON_WAIT_NS = 2_000_000_000
#: Descendants followed at once, at most (a fork bomb is not followed to the end).
MAX_DESCENDANTS = 1024


def children_of(pid: int) -> List[int]:
    """The child processes of ``pid``, from each of its threads' ``children`` list."""
    found: List[int] = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as f:
                found.extend(int(child) for child in f.read().split())
        except (OSError, ValueError):
            pass
    return found


def _program(pid: int) -> Optional[str]:
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


class Descendants:
    """The Python descendants of one target, each with its sampler.

    ``make_sampler(process)`` builds the sampler of an attached descendant; ``sink`` gets a
    PROCESS record when one is attached, skipped or ends; ``origin_ns`` is the recording's
    monotonic origin.
    """

    def __init__(self, root: int, make_sampler: Callable[[PythonProcess], Sampler], sink: Sink,
                 origin_ns: int) -> None:
        self.root = root
        self.make_sampler = make_sampler
        self.sink = sink
        self.origin_ns = origin_ns
        self.samplers: Dict[int, Sampler] = {}
        #: pid -> (its program, when it was first seen running it): not Python yet
        self._pending: Dict[int, Tuple[Optional[str], int]] = {}
        self._skipped: Set[int] = set()
        self._ended: Set[int] = set()  # recorded to their end (a zombie stays listed a while)
        self._parents: Dict[int, int] = {}
        self._next_look = 0
        #: When the coming round is due (see Sampler.due_ns), set by the target's sampler.
        self.due_ns: Optional[int] = None

    @property
    def target_running(self) -> int:
        """The descendants' threads their last round found running or runnable."""
        return sum(sampler.target_running for sampler in self.samplers.values())

    def sample_round(self, now: int) -> None:
        """Sample every descendant once in the round begun at ``now``; look for new ones
        when it is time to."""
        if now >= self._next_look:
            self._discover(now)
            self._next_look = now + DISCOVER_EVERY_NS
        for pid, sampler in list(self.samplers.items()):
            # The target's sampler stepped aside for it, if it had to, at the round's start:
            # moving again for each descendant would cost a migration each (milliseconds when
            # workers keep every CPU busy), and the round is under way by now.
            sampler.woke = False
            sampler.due_ns = self.due_ns
            try:
                sampler.sample_round(now)
            except TargetReplaced:
                self._end(pid, now)
                self._pending[pid] = (_program(pid), now)  # attached again as its new program
            except TargetNotFound:
                self._end(pid, now)
                self._ended.add(pid)

    def close(self, end_ns: int) -> None:
        """The recording ends: close every descendant still followed."""
        for pid in list(self.samplers):
            self._end(pid, end_ns + self.origin_ns)

    def _discover(self, now: int) -> None:
        alive: Set[int] = set()
        queue = [self.root]
        while queue and len(alive) < MAX_DESCENDANTS:
            parent = queue.pop()
            for child in children_of(parent):
                if child not in alive:
                    alive.add(child)
                    self._parents[child] = parent
                    queue.append(child)
        for pid in sorted(alive - self._skipped - self._ended - set(self.samplers)):
            self._try_attach(pid, now)
        for pid in list(self._pending):
            if pid not in alive:
                del self._pending[pid]  # ended before it became a Python
        self._skipped &= alive
        self._ended &= alive
        self._parents = {pid: parent for pid, parent in self._parents.items() if pid in alive}

    def _try_attach(self, pid: int, now: int) -> None:
        program = _program(pid)
        seen = self._pending.get(pid)
        if seen is None or seen[0] != program:
            seen = self._pending[pid] = (program, now)
        try:
            process = PythonProcess.attach(pid)
        except (NotPython, TargetNotFound) as exc:
            if now - seen[1] >= PYTHON_WAIT_NS:
                self._skip(pid, now, "not a Python process" if isinstance(exc, NotPython)
                           else str(exc))
            return
        except (UnsupportedPython, PermissionDenied) as exc:
            self._skip(pid, now, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a descendant that cannot be read is skipped,
            # not allowed to end the recording of the others
            self._skip(pid, now, "%s: %s" % (type(exc).__name__, exc))
            return
        del self._pending[pid]
        process.naming.find_threading()
        self.sink.process(pid=pid, ppid=self._parents.get(pid, self.root), argv=read_cmdline(pid),
                          python_version=process.version_string, executable=process.executable,
                          cwd=read_cwd(pid), start_ns=now - self.origin_ns)
        self.samplers[pid] = self.make_sampler(process)

    def _skip(self, pid: int, now: int, reason: str) -> None:
        self._pending.pop(pid, None)
        self._skipped.add(pid)
        self.sink.process(pid=pid, ppid=self._parents.get(pid, self.root), argv=read_cmdline(pid),
                          skipped=reason, start_ns=now - self.origin_ns)

    def _end(self, pid: int, now: int) -> None:
        sampler = self.samplers.pop(pid)
        end = now - self.origin_ns
        sampler.finish(end)
        sampler.process.close()
        self.sink.process(pid=pid, end_ns=end)
