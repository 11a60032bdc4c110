"""Just enough eBPF, through ctypes: an assembler, program and map loading, a ring buffer reader,
and per-CPU clock events to run a program on.

The kernel interfaces are those of include/uapi/linux/bpf.h and perf_event.h (Linux 5.8+ for
the ring buffer).  Everything here raises ``BpfUnavailable`` with the kernel's reason when the
machine or the caller's privileges do not allow it, so the caller can fall back.
"""

import ctypes
import mmap
import os
import struct
from typing import Dict, Iterator, List, Optional, Tuple

SYS_BPF = 321  # x86-64
SYS_PERF_EVENT_OPEN = 298

# bpf() commands
MAP_CREATE, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, PROG_LOAD = 0, 2, 3, 5
PROG_GET_NEXT_ID, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD = 11, 13, 15
#: Bytes of ``struct bpf_prog_info`` asked for: up to ``run_time_ns`` (192) and ``run_cnt`` (200).
PROG_INFO_SIZE = 208
# map and program types
MAP_TYPE_HASH, MAP_TYPE_ARRAY, MAP_TYPE_RINGBUF = 1, 2, 27
PROG_TYPE_PERF_EVENT = 7

# helper functions (enum bpf_func_id)
MAP_LOOKUP_ELEM = 1
KTIME_GET_NS = 5
GET_CURRENT_PID_TGID = 14
PROBE_READ_USER = 112
RINGBUF_RESERVE = 131
RINGBUF_SUBMIT = 132

# registers
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

# ring buffer record header bits (BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT)
RINGBUF_BUSY = 1 << 31
RINGBUF_DISCARD = 1 << 30
RINGBUF_HEADER = 8
#: bpf_ringbuf_submit's flag BPF_RB_NO_WAKEUP: without it, a record submitted to a ring its
#: reader had emptied wakes the reader's poll with an IRQ-work interrupt of the submitting CPU
#: (kernel/bpf/ringbuf.c), paid by the interrupted thread; spyrec's reader polls nobody.
RINGBUF_NO_WAKEUP = 1

# perf_event_open
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_CONTEXT_SWITCHES = 3
PERF_COUNT_SW_DUMMY = 9
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_REFRESH = 0x2402
PERF_EVENT_IOC_SET_BPF = 0x40042408
PERF_EVENT_IOC_SET_OUTPUT = 0x2405
PERF_ATTR_SIZE = 128
ATTR_DISABLED = 1 << 0
ATTR_WATERMARK = 1 << 14
ATTR_SAMPLE_ID_ALL = 1 << 18
ATTR_USE_CLOCKID = 1 << 25
ATTR_CONTEXT_SWITCH = 1 << 26
ATTR_WRITE_BACKWARD = 1 << 27
CLOCK_MONOTONIC = 1
#: PERF_SAMPLE_TID | PERF_SAMPLE_TIME: what a switch record carries (``ATTR_SAMPLE_ID_ALL``).
SWITCH_SAMPLE_TYPE = 1 << 1 | 1 << 2

LOG_SIZE = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfUnavailable(Exception):
    """The kernel or the caller's privileges do not allow what was asked (the reason in str)."""


def _bpf(cmd: int, attr: bytes, out: Optional[bytearray] = None) -> int:
    """bpf(cmd, attr); ``out``, if given, receives the attr as the kernel left it."""
    buf = ctypes.create_string_buffer(attr, max(len(attr), 128))
    result = _libc.syscall(SYS_BPF, cmd, buf, len(buf))
    if result < 0:
        err = ctypes.get_errno()
        raise BpfUnavailable("bpf(%d): %s" % (cmd, os.strerror(err)))
    if out is not None:
        out[:] = buf.raw[:len(out)]
    return result


class Assembler:
    """eBPF instructions with named jump targets, resolved by ``code()``."""

    def __init__(self) -> None:
        self._insns: List[Tuple[int, int, int, int, int, Optional[str]]] = []
        self._labels: Dict[str, int] = {}

    def _emit(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
              target: Optional[str] = None) -> None:
        self._insns.append((code, dst, src, off, imm, target))

    def label(self, name: str) -> None:
        self._labels[name] = len(self._insns)

    # ALU64
    def mov_imm(self, dst: int, imm: int) -> None:
        self._emit(0xb7, dst, imm=imm)

    def mov(self, dst: int, src: int) -> None:
        self._emit(0xbf, dst, src)

    def add_imm(self, dst: int, imm: int) -> None:
        self._emit(0x07, dst, imm=imm)

    def rsh_imm(self, dst: int, imm: int) -> None:
        self._emit(0x77, dst, imm=imm)

    def lsh_imm(self, dst: int, imm: int) -> None:
        self._emit(0x67, dst, imm=imm)

    def and_imm(self, dst: int, imm: int) -> None:
        self._emit(0x57, dst, imm=imm)

    # memory: size is 8, 4, 2 or 1
    _SIZE = {8: 0x18, 4: 0x00, 2: 0x08, 1: 0x10}

    def load(self, dst: int, src: int, off: int, size: int = 8) -> None:
        self._emit(0x61 | self._SIZE[size], dst, src, off)

    def store(self, dst: int, off: int, src: int, size: int = 8) -> None:
        self._emit(0x63 | self._SIZE[size], dst, src, off)

    def store_imm(self, dst: int, off: int, imm: int, size: int = 8) -> None:
        self._emit(0x62 | self._SIZE[size], dst, 0, off, imm)

    def load_imm64(self, dst: int, value: int) -> None:
        """dst = a 64-bit constant (BPF_LD_IMM64: two instruction slots)."""
        self._emit(0x18, dst, 0, 0, value & 0xffffffff)
        self._emit(0, 0, 0, 0, value >> 32)

    def load_map(self, dst: int, map_fd: int) -> None:
        """dst = the map whose fd is ``map_fd`` (a 16-byte BPF_LD_IMM64 with BPF_PSEUDO_MAP_FD)."""
        self._emit(0x18, dst, 1, 0, map_fd)
        self._emit(0, 0, 0, 0, 0)

    # jumps
    def jump(self, target: str) -> None:
        self._emit(0x05, target=target)

    def jump_if_imm(self, op: str, dst: int, imm: int, target: str) -> None:
        code = {"==": 0x15, "!=": 0x55, ">": 0x25, ">=": 0x35, "<": 0xa5, "s<": 0xc5}[op]
        self._emit(code, dst, imm=imm, target=target)

    def jump_if(self, op: str, dst: int, src: int, target: str) -> None:
        code = {"==": 0x1d, "!=": 0x5d}[op]
        self._emit(code, dst, src, target=target)

    def call(self, helper: int) -> None:
        self._emit(0x85, imm=helper)

    def exit(self) -> None:
        self._emit(0x95)

    def code(self) -> bytes:
        out = []
        for at, (code, dst, src, off, imm, target) in enumerate(self._insns):
            if target is not None:
                off = self._labels[target] - at - 1
                if not -32768 <= off <= 32767:
                    raise ValueError("jump to %s out of range" % target)
            imm = (imm + (1 << 31)) % (1 << 32) - (1 << 31)  # as the signed 32 bits it is
            out.append(struct.pack("<BBhi", code, (src << 4) | dst, off, imm))
        return b"".join(out)

    def __len__(self) -> int:
        return len(self._insns)


def load_program(code: bytes, name: str, prog_type: int = PROG_TYPE_PERF_EVENT) -> int:
    """The fd of a loaded program (``name``: what ``bpftool prog`` shows, 15 characters at
    most); BpfUnavailable with the verifier's last lines if refused."""
    insns = ctypes.create_string_buffer(code)
    license_ = ctypes.create_string_buffer(b"GPL")  # probe_read_user is GPL-only

    def attr(log_level: int, log_size: int, log_address: int) -> bytes:
        return struct.pack("<IIQQIIQII16s", prog_type, len(code) // 8, ctypes.addressof(insns),
                           ctypes.addressof(license_), log_level, log_size, log_address, 0, 0,
                           name.encode()[:15])

    try:
        # without the verifier's log: writing it makes a load several times slower
        return _bpf(PROG_LOAD, attr(0, 0, 0))
    except BpfUnavailable:
        pass
    log = ctypes.create_string_buffer(LOG_SIZE)  # refused: again, for the verifier's reason
    try:
        return _bpf(PROG_LOAD, attr(1, LOG_SIZE, ctypes.addressof(log)))
    except BpfUnavailable as exc:
        tail = log.value.decode("ascii", "replace").strip().splitlines()[-3:]
        raise BpfUnavailable("%s%s" % (exc, (": " + " / ".join(tail)) if tail else "")) from None


def program_stats(name: str) -> Optional[Tuple[int, int]]:
    """(runs, nanoseconds run) summed over the loaded programs called ``name``, as the kernel
    counts them while ``kernel.bpf_stats_enabled`` is 1; None when there is none."""
    found = None
    prog_id = 0
    while True:
        attr = bytearray(struct.pack("<I", prog_id)) + bytes(124)
        try:
            _bpf(PROG_GET_NEXT_ID, bytes(attr), out=attr)
        except BpfUnavailable:
            return found
        prog_id = struct.unpack_from("<I", attr, 4)[0]
        try:
            fd = _bpf(PROG_GET_FD_BY_ID, struct.pack("<I", prog_id))
        except BpfUnavailable:
            continue
        try:
            info = ctypes.create_string_buffer(PROG_INFO_SIZE)
            _bpf(OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, PROG_INFO_SIZE,
                                                 ctypes.addressof(info)))
            raw = info.raw
            if raw[64:80].split(b"\0")[0] == name.encode()[:15]:
                runs, ns = struct.unpack_from("<Q", raw, 200)[0], struct.unpack_from("<Q", raw, 192)[0]
                found = (runs + (found or (0, 0))[0], ns + (found or (0, 0))[1])
        finally:
            os.close(fd)


def create_map(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    return _bpf(MAP_CREATE, struct.pack("<IIIII", map_type, key_size, value_size,
                                         max_entries, 0))


def update_elem(map_fd: int, key: bytes, value: bytes) -> None:
    k = ctypes.create_string_buffer(key)
    v = ctypes.create_string_buffer(value)
    _bpf(MAP_UPDATE_ELEM, struct.pack("<IIQQQ", map_fd, 0, ctypes.addressof(k),
                                      ctypes.addressof(v), 0))


def delete_elem(map_fd: int, key: bytes) -> None:
    k = ctypes.create_string_buffer(key)
    try:
        _bpf(MAP_DELETE_ELEM, struct.pack("<IIQQQ", map_fd, 0, ctypes.addressof(k), 0, 0))
    except BpfUnavailable:
        pass  # not there


class RingBuffer:
    """The user side of a BPF_MAP_TYPE_RINGBUF map: records in the order they were committed.

    The kernel maps the data area twice in a row, so a record that wraps reads as one slice.
    """

    def __init__(self, map_fd: int, size: int):
        page = mmap.PAGESIZE
        self.size = size
        self._mask = size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=page)
        self._data = memoryview(self._producer)[page:]
        self._u64 = struct.Struct("<Q")
        self._u32 = struct.Struct("<I")
        self._read_to = 0  # the consumer position past the last record read

    def records(self) -> Iterator[memoryview]:
        """Each committed record not read yet, valid until ``consume()``, which gives their
        room back to the kernel."""
        u64, u32, data, mask = self._u64, self._u32, self._data, self._mask
        consumer = u64.unpack_from(self._consumer)[0]
        producer = u64.unpack_from(self._producer)[0]
        while consumer < producer:
            at = consumer & mask
            header = u32.unpack_from(data, at)[0]
            if header & RINGBUF_BUSY:
                break  # reserved, not committed yet: the records after it wait for it
            length = header & ~(RINGBUF_BUSY | RINGBUF_DISCARD)
            consumer += (length + RINGBUF_HEADER + 7) & ~7
            self._read_to = consumer
            if not header & RINGBUF_DISCARD:
                yield data[at + RINGBUF_HEADER:at + RINGBUF_HEADER + length]

    def consume(self) -> None:
        """Give back the room of the records ``records()`` went past."""
        if self._read_to:
            self._u64.pack_into(self._consumer, 0, self._read_to)

    def close(self) -> None:
        self._data.release()
        self._producer.close()
        self._consumer.close()


def open_cpu_clock(tid: int, period_ns: int, prog_fd: int, sample_type: int = 0,
                   regs_user: int = 0, stack_user: int = 0, backward: bool = False,
                   wakeup_bytes: int = 0) -> int:
    """A CPU-clock event of thread ``tid`` (on whatever CPU it runs) that runs ``prog_fd`` every
    ``period_ns`` of the thread's CPU time, not enabled yet.  With a ``sample_type``, the
    kernel also writes a sample (of ``regs_user`` and ``stack_user`` bytes of the user stack
    where asked, its time on CLOCK_MONOTONIC) whenever the program returns non-zero, into a
    ring written ``backward`` if asked (the newest kept, the oldest overwritten), and wakes its
    pollers each ``wakeup_bytes`` written (0: each half ring) with an IRQ-work interrupt."""
    flags = ATTR_DISABLED | (ATTR_USE_CLOCKID if sample_type else 0) \
        | (ATTR_WRITE_BACKWARD if backward else 0) | (ATTR_WATERMARK if wakeup_bytes else 0)
    return _open_event(tid, PERF_COUNT_SW_CPU_CLOCK, period_ns, prog_fd, sample_type, flags,
                       regs_user, stack_user, wakeup_bytes)


def open_switches(tid: int, prog_fd: int) -> int:
    """A context-switch event of thread ``tid`` that runs ``prog_fd`` each time the thread is
    switched out, and writes a ``PERF_RECORD_SWITCH`` each time it is switched out or in
    (stamped on CLOCK_MONOTONIC) into its ring (spyrec.switches), not enabled yet."""
    return _open_event(tid, PERF_COUNT_SW_CONTEXT_SWITCHES, 1, prog_fd, SWITCH_SAMPLE_TYPE,
                       ATTR_DISABLED | ATTR_SAMPLE_ID_ALL | ATTR_USE_CLOCKID
                       | ATTR_CONTEXT_SWITCH)


def open_switch_records(tid: int) -> int:
    """An event of thread ``tid`` that only writes a ``PERF_RECORD_SWITCH`` each time the
    thread is switched out or in, as ``open_switches``, not enabled yet: a dummy event, which
    never samples (``perf record`` takes its side-band records so)."""
    return _open_event(tid, PERF_COUNT_SW_DUMMY, 1, None, SWITCH_SAMPLE_TYPE,
                       ATTR_DISABLED | ATTR_SAMPLE_ID_ALL | ATTR_USE_CLOCKID
                       | ATTR_CONTEXT_SWITCH)


def open_switch_samples(tid: int, prog_fd: int, sample_type: int, regs_user: int,
                        stack_user: int) -> int:
    """A context-switch event of thread ``tid`` that runs ``prog_fd`` each time the thread is
    switched out, the kernel writing its sample (as ``open_cpu_clock`` does) into a ring
    written backward when the program returns non-zero; no switch records (see
    ``open_switch_records``), not enabled yet."""
    return _open_event(tid, PERF_COUNT_SW_CONTEXT_SWITCHES, 1, prog_fd, sample_type,
                       ATTR_DISABLED | ATTR_USE_CLOCKID | ATTR_WRITE_BACKWARD, regs_user,
                       stack_user)


def _open_event(tid: int, config: int, period: int, prog_fd: Optional[int], sample_type: int,
                flags: int, regs_user: int = 0, stack_user: int = 0,
                wakeup_bytes: int = 0) -> int:
    """A software perf event of thread ``tid`` (include/uapi/linux/perf_event.h, struct
    perf_event_attr), with ``prog_fd`` attached when given."""
    attr = bytearray(PERF_ATTR_SIZE)
    struct.pack_into("<IIQQQQQI", attr, 0, PERF_TYPE_SOFTWARE, PERF_ATTR_SIZE, config, period,
                     sample_type, 0, flags, wakeup_bytes)
    struct.pack_into("<QIi", attr, 80, regs_user, stack_user, CLOCK_MONOTONIC)
    buf = ctypes.create_string_buffer(bytes(attr), PERF_ATTR_SIZE)
    fd = _libc.syscall(SYS_PERF_EVENT_OPEN, buf, tid, -1, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        raise BpfUnavailable("perf_event_open: %s" % os.strerror(ctypes.get_errno()))
    if prog_fd is not None and _libc.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise BpfUnavailable("PERF_EVENT_IOC_SET_BPF: %s" % os.strerror(err))
    return fd


def enable(fd: int, on: bool = True) -> None:
    if _libc.ioctl(fd, PERF_EVENT_IOC_ENABLE if on else PERF_EVENT_IOC_DISABLE, 0) < 0:
        raise BpfUnavailable("perf event ioctl: %s" % os.strerror(ctypes.get_errno()))


def refresh(fd: int) -> None:
    """Enable event ``fd`` for one more interrupt, after which the kernel turns it off."""
    if _libc.ioctl(fd, PERF_EVENT_IOC_REFRESH, 1) < 0:
        raise BpfUnavailable("perf event ioctl: %s" % os.strerror(ctypes.get_errno()))


def set_output(fd: int, into_fd: int) -> None:
    """Have event ``fd`` write its samples into the ring of event ``into_fd`` (of the same
    thread, clock and direction, include/uapi/linux/perf_event.h)."""
    if _libc.ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, into_fd) < 0:
        raise BpfUnavailable("perf event ioctl: %s" % os.strerror(ctypes.get_errno()))
