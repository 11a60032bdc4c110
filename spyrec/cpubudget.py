"""On a machine with no CPU to spare, the recorder gives up rate rather than the target's time.

Every CPU microsecond a round takes on a busy machine is one some other task waits for, the
target's threads among them.  A program whose stacks are deep and change every microsecond
(black's nested generators) costs a round hundreds of microseconds, walks done again
included: at 1 kHz the recorder then takes half a CPU, and next to other busy work the target
loses about that much.  So while the kernel says tasks are waiting for a CPU (pressure stall
information, ``/proc/pressure/cpu``: the share of time some task was runnable but not
running), rounds are spaced so that the recorder uses at most ``BUSY_SHARE`` of a CPU; the
grid points skipped are counted as late, and each sample then stands for the time until the
next one, so shares stay right.  On an idle machine, or a kernel without pressure stall
information, nothing changes.
"""

import os
from typing import Optional, Tuple

PRESSURE_FILE = "/proc/pressure/cpu"
#: How often the pressure is read (its ``total`` counter is cumulative: the share is taken
#: over this span).
CHECK_EVERY_NS = 200_000_000
#: The machine is busy when some task waited for a CPU this share of the last span or more.
BUSY_PRESSURE = 0.25
#: The share of one CPU the recorder keeps to while the machine is busy.
BUSY_SHARE = 0.2
#: Weight of the latest round in the running mean of round costs.
COST_WEIGHT = 0.1


class CpuBudget:
    """Spaces rounds while the machine is busy (see the module docstring)."""

    def __init__(self, fd: int):
        self._fd = fd
        self._next_check = 0
        self._last: Optional[Tuple[int, int]] = None  # (monotonic ns, stall µs) of the last read
        self.busy = False
        self._cost: Optional[float] = None  # running mean of round costs, ns
        #: Grid points skipped to keep to the budget.
        self.skipped = 0

    @classmethod
    def open(cls, path: str = PRESSURE_FILE) -> Optional["CpuBudget"]:
        """A budget reading ``path``; None where the kernel gives no CPU pressure."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        budget = cls(fd)
        if budget._stall_us() is None:
            budget.close()
            return None
        return budget

    def _stall_us(self) -> Optional[int]:
        """The ``some`` line's ``total``: µs during which some task waited for a CPU."""
        try:
            line = os.pread(self._fd, 256, 0).split(b"\n", 1)[0]
            return int(line.rsplit(b"total=", 1)[1])
        except (OSError, IndexError, ValueError):
            return None

    def next_round(self, done: int, cost: int, next_round: int, interval: int) -> int:
        """The grid point for the next round after one that took ``cost`` ns of the sampling
        thread's CPU time (not its wall time: on a busy machine a round also waits for a CPU)
        and ended at ``done``: ``next_round`` itself, or a later one while the machine is busy."""
        self._cost = cost if self._cost is None else self._cost + COST_WEIGHT * (cost - self._cost)
        if done >= self._next_check:
            self._check(done)
        if not self.busy:
            return next_round
        earliest = done + int(self._cost * (1 - BUSY_SHARE) / BUSY_SHARE)
        if earliest <= next_round:
            return next_round
        skip = -(-(earliest - next_round) // interval)
        self.skipped += skip
        return next_round + skip * interval

    def _check(self, now: int) -> None:
        self._next_check = now + CHECK_EVERY_NS
        stall = self._stall_us()
        if stall is None:
            self.busy = False
            return
        if self._last is not None:
            span_us = (now - self._last[0]) / 1000
            self.busy = span_us > 0 and (stall - self._last[1]) / span_us >= BUSY_PRESSURE
        self._last = (now, stall)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
