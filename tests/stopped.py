"""Walks of a target taken while it runs and while it is stopped, for comparing the two.

A stopped target (SIGSTOP, as py-spy's default mode and perf's interrupts see a program) holds
still while its frames are read, so its walks are the reference for what the walks of the same
program running should show: the same stacks, at the same lines, in the same shares.  Only the
tests and the benchmarks stop a target; spyrec never does.
"""

import collections
import os
import signal
import time
from typing import Counter, Dict, Tuple

#: (functions outermost first, innermost line) of one walk: () when it found no frames.
Walk = Tuple[Tuple[str, ...], int]


def _stopped(pid: int) -> bool:
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


def alternate_walks(process, pid: int, walks: int, pause: float = 0.0003,
                    copies: bool = False) -> Dict[str, Tuple[Counter, int, int]]:
    """``{"running": (Counter of Walk, torn, unsent links), "stopped": (...)}`` from ``walks``
    walks of the target's first thread, one running and one stopped by turns, ``pause``
    seconds apart (unsent links: see spyrec.chunkwalk ``_sent_from``).

    ``process`` is an attached ``spyrec.interpreter.PythonProcess``; ``pid`` the process to
    stop (a chroot wrapper execs the target, so it is the target's).  ``copies``: the running
    walks take the thread's stack copied at its latest interrupt, when the process has
    ``start_capture()``d (see spyrec.stackcapture).
    """
    counts: Dict[str, Counter] = {"running": collections.Counter(),
                                  "stopped": collections.Counter()}
    torn: Counter = collections.Counter()
    unsent: Counter = collections.Counter()  # links a walk found not made by a resumption
    names = {}

    def describe(frame) -> Tuple[str, int]:
        found = names.get(frame)
        if found is None:
            where = process.codes.describe(*frame)
            found = names[frame] = (where.name, where.line)
        return found

    for i in range(walks):
        time.sleep(pause)
        mode = "stopped" if i % 2 else "running"
        if mode == "stopped":
            os.kill(pid, signal.SIGSTOP)
            deadline = time.monotonic() + 2.0
            while not _stopped(pid) and time.monotonic() < deadline:
                pass
        before = getattr(process.walker, "unsent_links", 0)
        try:
            running = {pid} if copies and mode == "running" else frozenset()
            stacks = process.sample_threads(running=running)
        finally:
            if mode == "stopped":
                os.kill(pid, signal.SIGCONT)
        frames = stacks[0].frames if stacks else ()
        torn[mode] += bool(stacks and stacks[0].torn)
        unsent[mode] += getattr(process.walker, "unsent_links", 0) - before
        described = [describe(frame) for frame in frames]
        counts[mode][tuple(name for name, _ in reversed(described)),
                     described[0][1] if described else 0] += 1
    return {mode: (counts[mode], torn[mode], unsent[mode]) for mode in counts}


def wrong_visit(walk: Walk, visits: int) -> bool:
    """A stack of tests/targets/visitor.py that cannot happen: not rooted at <module>, or
    ``work`` under another number of ``visit`` frames than the tree's depth, or more ``visit``
    frames than that."""
    functions, _ = walk
    if not functions or functions[0] != "<module>":
        return True
    return "work" in functions and functions.count("visit") != visits \
        or functions.count("visit") > visits


def distance(a: Counter, b: Counter) -> float:
    """Total variation distance between two samples' distributions (0 same, 1 disjoint)."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 1.0
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def by(counts: Counter, key) -> Counter:
    """The same walks counted by ``key(walk)``."""
    out: Counter = collections.Counter()
    for walk, n in counts.items():
        out[key(walk)] += n
    return out
