"""When a thread left its CPU and took it again: the kernel's ``PERF_RECORD_SWITCH`` records.

A round of sampling is meant to show each thread as it was at the round's moment.  /proc says
only how a thread is when it is read, tens of microseconds later, and a thread that was
preempted (a client woken on its CPU, the recorder's own wake-up) or woken from a short sleep
meanwhile is then found back at work.  A per-thread context-switch event with
``context_switch`` set has the kernel write a record each time the thread is switched out
(flagged when it was preempted, still runnable) and in, stamped on CLOCK_MONOTONIC
(include/uapi/linux/perf_event.h, ``PERF_RECORD_SWITCH``): from them, whether the thread was on
a CPU at any moment of the last rounds, and since when it was not.
"""

import mmap
import struct
import time
from collections import deque
from typing import Deque, Optional, Tuple

from spyrec.perfstacks import ring_bytes

#: Data pages of each thread's ring (a power of two): 24 bytes a record, two a switch, read at
#: every round.
RING_PAGES = 2
PERF_RECORD_LOST, PERF_RECORD_SWITCH = 2, 14
MISC_SWITCH_OUT, MISC_SWITCH_OUT_PREEMPT = 1 << 13, 1 << 14
#: What a record says the thread did.
IN, PREEMPTED, SLEPT = 0, 1, 2
#: Switches kept per thread: those since a few rounds ago.
HISTORY = 64

_HEADER = struct.Struct("<IHH")
_ID = struct.Struct("<IIQ")  # sample_id_all with PERF_SAMPLE_TID | PERF_SAMPLE_TIME
_U64 = struct.Struct("<Q")
_HEAD_AT, _TAIL_AT = 1024, 1032  # struct perf_event_mmap_page: data_head, data_tail


class SwitchRing:
    """One thread's ring of switch records, read forward (the kernel stops writing when it is
    full, and says how many it lost)."""

    def __init__(self, fd: int):
        page = mmap.PAGESIZE
        self._size = RING_PAGES * page
        self._map = mmap.mmap(fd, page * (1 + RING_PAGES), mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self._data = memoryview(self._map)[page:]
        #: (time, IN / PREEMPTED / SLEPT), oldest first
        self.events: Deque[Tuple[int, int]] = deque(maxlen=HISTORY)
        #: Records were lost since: what the history says before then is not the whole story.
        self.lost_at = 0
        #: When the records began (monotonic ns; ``started``), and whether ``events`` holds
        #: every switch since (none lost, none dropped from the history).
        self.started_ns: Optional[int] = None
        self.whole = True

    def started(self) -> None:
        """Say that the event now writes its records (call right after enabling it)."""
        self.started_ns = time.monotonic_ns()

    def read(self) -> None:
        """Take the records written since the last read into ``events``."""
        size = self._size
        head = _U64.unpack_from(self._map, _HEAD_AT)[0]
        tail = _U64.unpack_from(self._map, _TAIL_AT)[0]
        events = self.events
        while tail + _HEADER.size <= head:
            at = tail % size
            kind, misc, length = _HEADER.unpack_from(ring_bytes(self._data, at, _HEADER.size))
            if length < _HEADER.size:
                break
            if kind == PERF_RECORD_SWITCH and length >= _HEADER.size + _ID.size:
                _, _, time_ns = _ID.unpack_from(
                    ring_bytes(self._data, (at + _HEADER.size) % size, _ID.size))
                if len(events) == HISTORY:
                    self.whole = False
                if not misc & MISC_SWITCH_OUT:
                    events.append((time_ns, IN))
                else:
                    events.append((time_ns, PREEMPTED if misc & MISC_SWITCH_OUT_PREEMPT
                                   else SLEPT))
            elif kind == PERF_RECORD_LOST:
                self.lost_at = events[-1][0] if events else 0
                self.whole = False
                events.clear()
            tail += length
        _U64.pack_into(self._map, _TAIL_AT, tail)

    def state_at(self, moment: int) -> Optional[Tuple[int, int]]:
        """(IN, PREEMPTED or SLEPT; the time of that switch) of the last switch at or before
        ``moment``; None when the records kept do not reach back to it.

        A thread with no switch since the records began up to ``moment``, or whose first took
        it off its CPU, had not left its CPU since it was last on it: (IN, when the records
        began), on it then if it ran at all since (a copy made since says so).  A busy
        thread alone on its CPU runs on for long without a switch."""
        found = None
        for time_ns, kind in reversed(self.events):
            if time_ns <= moment:
                found = (kind, time_ns)
                break
        if found is None:
            if (self.whole and self.started_ns is not None and self.started_ns <= moment
                    and (not self.events or self.events[0][1] != IN)):
                return (IN, self.started_ns)
            return None
        if found[1] < self.lost_at:
            return None
        return found

    def close(self) -> None:
        self._data.release()
        self._map.close()

