"""On a machine busy with other work, the recorder gives up rate rather than the target's time.

Every CPU microsecond a round takes on a busy machine is one some other task waits for, the
target's threads among them.  A program whose stacks are deep and change every microsecond
(black's nested generators) costs a round hundreds of microseconds, walks done again
included: at 1 kHz the recorder then takes half a CPU, and next to other busy work the target
loses about that much.  So while other work keeps the CPUs full, rounds are spaced so that the
recorder uses at most ``BUSY_SHARE`` of a CPU; each sample then stands for the time until the
thread's next one, so shares stay right.

Busy means: more tasks runnable than there are CPUs besides the recorder, some of them neither
the recorder nor the target (``/proc/loadavg``'s count of runnable tasks, less the recorder,
its line helper while it decodes, and the target threads its last round found running, those
of the descendants it follows included), in ``BUSY_LOOKS`` of the looks over the last
``DECIDE_EVERY_NS``.  A target that fills the CPUs
by itself is not slowed by other work: the recorder keeps its rate.
"""

import os
from typing import Optional

LOADAVG = "/proc/loadavg"
#: How often the run queue is looked at, and how often the looks decide.
LOOK_EVERY_NS = 10_000_000
DECIDE_EVERY_NS = 200_000_000
#: The share of looks that must find other work waiting: most of them, so that the moments the
#: target's own threads wake together (a dormant worker is counted only once a round reads it)
#: do not count.
BUSY_LOOKS = 0.8
#: The share of one CPU the recorder keeps to while the machine is busy.
BUSY_SHARE = 0.1
#: Weight of the latest round in the running mean of round costs.
COST_WEIGHT = 0.1


class CpuBudget:
    """Spaces rounds while the machine is busy with other work (see the module docstring)."""

    def __init__(self, fd: int, cpus: int):
        self._fd = fd
        self._cpus = cpus
        self._next_look = 0
        self._next_decision = 0
        self._looks = 0
        self._busy_looks = 0
        self.busy = False
        self._cost: Optional[float] = None  # running mean of round costs, ns
        #: Grid points skipped to keep to the budget.
        self.skipped = 0

    @classmethod
    def open(cls, path: str = LOADAVG, cpus: Optional[int] = None) -> Optional["CpuBudget"]:
        """A budget reading ``path``; None where it cannot be read."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        budget = cls(fd, cpus if cpus is not None else len(os.sched_getaffinity(0)))
        if budget._runnable() is None:
            budget.close()
            return None
        return budget

    def _runnable(self) -> Optional[int]:
        """Tasks runnable on the machine now (the fourth field's numerator), the reader too."""
        try:
            return int(os.pread(self._fd, 128, 0).split()[3].split(b"/")[0])
        except (OSError, IndexError, ValueError):
            return None

    def next_round(self, done: int, cost: int, next_round: int, interval: int,
                   target_running: int) -> int:
        """The grid point for the next round after one that took ``cost`` ns of the sampling
        thread's CPU time (not its wall time: on a busy machine a round also waits for a CPU),
        ended at ``done`` and found ``target_running`` target threads running or runnable
        (and the recorder's own other threads with work, not other work either):
        ``next_round`` itself, or a later one while the machine is busy."""
        self._cost = cost if self._cost is None else self._cost + COST_WEIGHT * (cost - self._cost)
        if done >= self._next_look:
            self._look(done, target_running)
        if not self.busy:
            return next_round
        earliest = done + int(self._cost * (1 - BUSY_SHARE) / BUSY_SHARE)
        if earliest <= next_round:
            return next_round
        skip = -(-(earliest - next_round) // interval)
        self.skipped += skip
        return next_round + skip * interval

    def _look(self, now: int, target_running: int) -> None:
        self._next_look = now + LOOK_EVERY_NS
        if not self._next_decision:
            self._next_decision = now + DECIDE_EVERY_NS
        runnable = self._runnable()
        if runnable is not None:
            self._looks += 1
            others = runnable - 1 - target_running
            # at least one task more than the CPUs and the recorder: someone waits all along
            self._busy_looks += others > 0 and runnable > self._cpus + 1
        if now >= self._next_decision:
            self._next_decision = now + DECIDE_EVERY_NS
            self.busy = self._looks > 0 and self._busy_looks >= BUSY_LOOKS * self._looks
            self._looks = self._busy_looks = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
