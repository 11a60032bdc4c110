"""Copies of a thread's user stack and registers, made by the kernel at a CPU-clock interrupt:
what a native unwinder needs, taken without stopping the thread.

The event is the one that runs the Python stack copier (spyrec.stackcapture): the kernel writes
this sample right after the program has copied the Python frames, at the same interrupt, so the
two describe one moment.  A sample holds the instruction, stack and frame pointers, and the
top ``STACK_BYTES`` of the stack (``PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER``, as
``perf record --call-graph dwarf`` takes them), in a ring buffer per event
(include/uapi/linux/perf_event.h).
"""

import mmap
import struct
from typing import Dict, List, NamedTuple, Optional

#: Bytes of stack copied per sample: the C frames of the eval loop and of the calls between
#: Python frames.  A sample's record holds at most 64 KiB (its size is 16 bits).
STACK_BYTES = 32768
#: Data pages of each event's ring buffer (a power of two): a few samples' room, and a round
#: takes out what the last rounds' interrupts put in.
RING_PAGES = 32

PERF_SAMPLE_TID, PERF_SAMPLE_TIME = 1 << 1, 1 << 2
PERF_SAMPLE_REGS_USER, PERF_SAMPLE_STACK_USER = 1 << 12, 1 << 13
SAMPLE_TYPE = PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER
#: arch/x86/include/uapi/asm/perf_regs.h: BP, SP, IP, in that order in a sample.
REG_BP, REG_SP, REG_IP = 6, 7, 8
REGS_MASK = (1 << REG_BP) | (1 << REG_SP) | (1 << REG_IP)
PERF_RECORD_SAMPLE = 9

_HEADER = struct.Struct("<IHH")
_SAMPLE = struct.Struct("<IIQQ")  # pid, tid, time, regs abi
_REGS = struct.Struct("<QQQ")
_U64 = struct.Struct("<Q")
# struct perf_event_mmap_page: data_head, data_tail, data_offset, data_size
_HEAD_AT, _TAIL_AT = 1024, 1032


class UserStack(NamedTuple):
    """A thread's user registers and the stack above its stack pointer, at one instant."""

    tid: int
    time_ns: int  # CLOCK_MONOTONIC
    ip: int
    sp: int
    bp: Optional[int]  # None when not known (a thread read asleep: see spyrec.nativestacks)
    stack: bytes  # from ``sp`` up


class SampleRing:
    """One event's ring buffer of samples."""

    def __init__(self, fd: int):
        page = mmap.PAGESIZE
        self._map = mmap.mmap(fd, page * (1 + RING_PAGES), mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self._data = memoryview(self._map)[page:]
        self._size = page * RING_PAGES

    def newest(self) -> Optional[UserStack]:
        """The newest sample since the last call (the older ones are given back unread)."""
        head = _U64.unpack_from(self._map, _HEAD_AT)[0]
        tail = _U64.unpack_from(self._map, _TAIL_AT)[0]
        size, data = self._size, self._data
        newest = None
        while tail < head:
            at = tail % size
            if at + _HEADER.size > size:
                break  # a header never wraps (records are 8-aligned); not a valid ring
            kind, _, length = _HEADER.unpack_from(data, at)
            if length < _HEADER.size:
                break
            if kind == PERF_RECORD_SAMPLE:
                newest = (at, length)
            tail += length
        found = None
        if newest is not None:
            at, length = newest
            record = self._record(at, length)
            found = _parse(record)
        _U64.pack_into(self._map, _TAIL_AT, head)
        return found

    def _record(self, at: int, length: int) -> bytes:
        end = at + length
        if end <= self._size:
            return bytes(self._data[at:end])
        return bytes(self._data[at:]) + bytes(self._data[:end - self._size])

    def close(self) -> None:
        self._data.release()
        self._map.close()


def _parse(record: bytes) -> Optional[UserStack]:
    try:
        _, tid, time_ns, abi = _SAMPLE.unpack_from(record, _HEADER.size)
        at = _HEADER.size + _SAMPLE.size
        if not abi:
            return None  # a kernel thread's, or no user registers
        bp, sp, ip = _REGS.unpack_from(record, at)
        at += _REGS.size
        (size,) = _U64.unpack_from(record, at)
        at += 8
        (dyn_size,) = _U64.unpack_from(record, at + size)
    except struct.error:
        return None
    return UserStack(tid, time_ns, ip, sp, bp, record[at:at + min(dyn_size, size)])


def newest_by_tid(rings: Dict[int, SampleRing]) -> Dict[int, UserStack]:
    """{tid: its newest sample} of every ring."""
    found: Dict[int, UserStack] = {}
    for tid, ring in rings.items():
        sample = ring.newest()
        if sample is not None:
            found[tid] = sample
    return found


def close_all(rings: List[SampleRing]) -> None:
    for ring in rings:
        ring.close()
