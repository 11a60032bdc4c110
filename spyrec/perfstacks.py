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
from typing import NamedTuple, Optional

#: Bytes of stack copied per sample: the C frames of the eval loop and of the calls between
#: Python frames.  A sample's record holds at most 64 KiB (its size is 16 bits).
STACK_BYTES = 32768
#: Data pages of each event's ring buffer (a power of two): room for the last seven samples
#: (the round looks for the one whose copy of the Python frames it takes: the newest, or the
#: one before the round's moment, up to a few milliseconds before the round reads it).
RING_PAGES = 64
RING_BYTES = RING_PAGES * mmap.PAGESIZE

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
# struct perf_event_mmap_page: data_head
_HEAD_AT = 1024


class UserStack(NamedTuple):
    """A thread's user registers and the stack above its stack pointer, at one instant."""

    tid: int
    time_ns: int  # CLOCK_MONOTONIC
    ip: int
    sp: int
    bp: Optional[int]  # None when not known (a thread read asleep: see spyrec.nativestacks)
    stack: bytes  # from ``sp`` up


class SampleRing:
    """One event's ring buffer of samples, written backward (``write_backward``): the kernel
    overwrites the oldest samples, never drops the newest, and the newest is where the head
    points, so a round that comes late still finds the sample of the interrupt it wants."""

    def __init__(self, fd: int):
        page = mmap.PAGESIZE
        self._map = mmap.mmap(fd, page * (1 + RING_PAGES), mmap.MAP_SHARED, mmap.PROT_READ)
        self._data = memoryview(self._map)[page:]
        self._size = RING_BYTES

    def sample_at(self, time_ns: int, within_ns: int) -> Optional[UserStack]:
        """The newest sample taken within ``within_ns`` of ``time_ns``, if the ring still
        holds one."""
        size, data = self._size, self._data
        head = _U64.unpack_from(self._map, _HEAD_AT)[0]
        written = min(size, (-head) % (1 << 64))  # the head moves down from 0
        at, done = head % size, 0
        while done + _HEADER.size <= written:
            kind, _, length = _HEADER.unpack_from(data, at)
            if length < _HEADER.size or done + length > written:
                break
            if kind == PERF_RECORD_SAMPLE:
                record = self._record(at, length)
                found = _parse(record)
                # the kernel may have come round over what was read: the head says
                if (head - _U64.unpack_from(self._map, _HEAD_AT)[0]) % (1 << 64) > size - done - length:
                    return None
                if found is not None and abs(found.time_ns - time_ns) <= within_ns:
                    return found
                if found is not None and found.time_ns < time_ns - within_ns:
                    return None  # older still: none will do
            at = (at + length) % size
            done += length
        return None

    def _record(self, at: int, length: int) -> bytes:
        return ring_bytes(self._data, at, length)

    def close(self) -> None:
        self._data.release()
        self._map.close()


def ring_bytes(data: memoryview, at: int, length: int) -> bytes:
    """``length`` bytes of a perf ring's ``data`` from offset ``at``, where a record may run
    past its end and on from its start."""
    end = at + length
    if end <= len(data):
        return bytes(data[at:end])
    return bytes(data[at:]) + bytes(data[:end - len(data)])


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
