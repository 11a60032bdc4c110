"""Access to another process: its memory, its memory map and its files.

Everything that reads target memory goes through the small ``MemoryReader`` protocol
(``read(addr, size) -> bytes`` and ``read_many(ranges) -> list``), so the walker is generic
over how bytes arrive (the unit tests point it at the test process itself).

Two mechanisms, both needing ptrace-attach rights (root, CAP_SYS_PTRACE, or same uid with Yama
``ptrace_scope`` 0):

* ``os.pread`` on a kept-open ``/proc/PID/mem`` fd: the cheapest way to do a small read from
  pure Python.  Keeping the fd open also pins the process identity:
  access is checked at ``open``, and the fd never reads a recycled PID.
* ``process_vm_readv`` through ctypes with prebuilt buffers and iovecs: one call gathers many
  ranges, cheaper than as many ``pread``s on some machines and dearer on others, so
  ``TargetMemory`` times both (see there).

Partial failures (process_vm_readv(2)): one iovec that crosses into an unmapped page yields a
short count; ``[bad, good]`` fails with EFAULT and reads nothing; ``[good, bad]`` reads only the good
part.  ``read_many`` therefore re-issues the ranges after a failed one.
"""

import ctypes
import errno
import os
import re
import statistics
import struct
import time
from itertools import accumulate
from typing import Callable, Dict, List, NamedTuple, Optional, Protocol, Sequence, Tuple

from spyrec.errors import MemoryReadError, PermissionDenied, TargetNotFound

#: Reads at least this large go through process_vm_readv where it measures cheaper than preads
#: (see TargetMemory).
LARGE_READ = 16 * 1024
#: Batched reads timed with each reader before TargetMemory keeps the cheaper.
CALIBRATION_READS = 24


class MemoryReader(Protocol):
    """What the walker needs from a target: plain reads of its address space."""

    def read(self, addr: int, size: int) -> bytes:
        """Return exactly ``size`` bytes at ``addr``, or raise MemoryReadError."""

    def read_many(self, ranges: Sequence[Tuple[int, int]]) -> List[Optional[bytes]]:
        """Read several ``(addr, size)`` ranges; an unreadable range gives None, never raises."""


# ----------------------------------------------------------------------------------------------
# Process identity


def proc_path(pid: int, *parts: str) -> str:
    return "/proc/%d/%s" % (pid, "/".join(parts))


def process_start_time(pid: int) -> Optional[int]:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None if the process is gone.

    The command name (field 2) may contain spaces and ')', so split after the *last* ')'.
    """
    try:
        with open(proc_path(pid, "stat"), "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):  # zombie or dead: no memory left to read
        return None
    return int(fields[19])


def check_pid(pid: int) -> int:
    """Return the start time of ``pid``; raise TargetNotFound if there is no such process."""
    if not isinstance(pid, int) or pid <= 0:
        raise TargetNotFound("invalid PID %r" % (pid,))
    start = process_start_time(pid)
    if start is None:
        if os.path.exists(proc_path(pid, "stat")):
            raise TargetNotFound("process %d has exited (a zombie its parent has not reaped)"
                                 % pid)
        raise TargetNotFound("no process with PID %d" % pid)
    return start


def permission_error(pid: int, what: str) -> PermissionDenied:
    return PermissionDenied("cannot %s of process %d: %s" % (what, pid, PermissionDenied.hint()))


# ----------------------------------------------------------------------------------------------
# /proc/PID/maps and files as the target sees them


class MemoryMap(NamedTuple):
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str  # e.g. "r-xp"
    offset: int  # file offset of ``start``
    inode: int
    path: str  # "" for anonymous mappings; may end in " (deleted)"
    dev: str = ""  # "major:minor" (hex) of the device holding the file

    @property
    def deleted(self) -> bool:
        return self.path.endswith(" (deleted)")


def parse_maps(text: str) -> List[MemoryMap]:
    maps = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, hi = parts[0].split("-")
        maps.append(MemoryMap(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16),
                              int(parts[4]), parts[5] if len(parts) > 5 else "", parts[3]))
    return maps


def read_maps(pid: int) -> List[MemoryMap]:
    """Parse /proc/PID/maps (at attach, and when a walk finds nothing: see _check_not_replaced)."""
    try:
        with open(proc_path(pid, "maps")) as f:
            return parse_maps(f.read())
    except FileNotFoundError:
        raise TargetNotFound("no process with PID %d" % pid) from None
    except ProcessLookupError:
        raise TargetNotFound("process %d exited" % pid) from None
    except PermissionError:
        raise permission_error(pid, "read the memory map") from None


def target_file(pid: int, mapping: MemoryMap) -> str:
    """A path in *our* mount namespace that opens the file behind ``mapping``.

    The kernel prints maps paths relative to the *reader's* root where it can: a process
    chrooted into ROOT shows ``ROOT/usr/bin/python3.15``, openable as is, while a process in
    another mount namespace (a container) shows its own view, ``/usr/bin/python3.15``, which
    opens as ``/proc/PID/root/usr/bin/python3.15``.  Both are tried, and the one whose inode
    is the mapping's wins (a same-named file elsewhere is never taken); failing that, the first
    that exists (overlayfs may report another inode in maps).  A " (deleted)" file (replaced
    on disk, e.g. by a package upgrade), or one neither path reaches, is opened through
    ``/proc/PID/map_files/lo-hi``, which still opens the mapped inode (needs CAP_SYS_ADMIN).
    """
    map_file = proc_path(pid, "map_files", "%x-%x" % (mapping.start, mapping.end))
    if mapping.deleted:
        return map_file
    candidates = (proc_path(pid, "root") + mapping.path, mapping.path)
    existing = []
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_ino == mapping.inode:
            return path
        existing.append(path)
    return existing[0] if existing else map_file


def target_view(pid: int, path: str) -> str:
    """``path`` (as /proc shows it to us) as the target sees it: a chrooted target's root
    directory prefix is dropped (``ROOT/usr/bin/python3.15`` -> ``/usr/bin/python3.15``)."""
    try:
        root = os.readlink(proc_path(pid, "root"))
    except OSError:
        return path
    if root != "/" and path.startswith(root + "/"):
        return path[len(root):]
    return path


def executable_path(pid: int) -> str:
    """readlink /proc/PID/exe: the binary as /proc shows it to us (a venv symlink resolved;
    under a chroot, with the root's prefix: see ``target_view``)."""
    try:
        return os.readlink(proc_path(pid, "exe"))
    except FileNotFoundError:
        raise TargetNotFound("no process with PID %d" % pid) from None
    except PermissionError:
        raise permission_error(pid, "inspect the executable") from None
    except OSError as exc:  # ENOENT for kernel threads, ESRCH while exiting
        raise TargetNotFound("process %d has no executable (%s)" % (pid, exc.strerror)) from None


def read_text(pid: int, *parts: str) -> Optional[str]:
    """Contents of a small /proc file, or None when it cannot be read."""
    try:
        with open(proc_path(pid, *parts), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def thread_ids(pid: int) -> List[int]:
    """Kernel TIDs of the process's threads (host namespace)."""
    try:
        return sorted(int(t) for t in os.listdir(proc_path(pid, "task")))
    except OSError:
        return []


def namespace_pids(pid: int, tid: Optional[int] = None) -> List[int]:
    """The ``NSpid:`` line of the status file: host id first, innermost namespace last."""
    text = read_text(pid, "task", str(tid), "status") if tid else read_text(pid, "status")
    match = re.search(r"^NSpid:\s*(.*)$", text or "", re.M)
    return [int(x) for x in match.group(1).split()] if match else []


# ----------------------------------------------------------------------------------------------
# process_vm_readv via ctypes


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_process_vm_readv = getattr(_libc, "process_vm_readv", None)
if _process_vm_readv is not None:
    _process_vm_readv.restype = ctypes.c_ssize_t
    _process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                                  ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.c_ulong]

#: The kernel's IOV_MAX: more iovecs per call are refused with EINVAL.
_IOV_MAX = 1024


class ProcessVmReader:
    """``process_vm_readv`` with buffers and iovec arrays built once and grown on demand.

    Building ctypes objects per call costs more than the system call itself, so the local
    buffer and both iovec arrays are kept; only their fields are rewritten per call.
    """

    # Made by _grow, which __init__ calls: a reader never has them missing.
    _buf: "ctypes.Array[ctypes.c_char]"
    _view: memoryview
    _local: "ctypes.Array[_IOVec]"
    _remote: "ctypes.Array[_IOVec]"
    _local_view: memoryview
    _remote_view: memoryview
    _base: int

    def __init__(self, pid: int):
        if _process_vm_readv is None:
            raise OSError(errno.ENOSYS, "process_vm_readv is not available")
        self.pid = pid
        self._cap = 0
        self._niov = 0
        self._packers: Dict[int, Callable[..., None]] = {}
        self._grow(64 * 1024, 64)

    def _grow(self, size: int, niov: int) -> None:
        if size > self._cap:
            self._cap = max(size, 2 * self._cap)
            self._buf = ctypes.create_string_buffer(self._cap)
            self._view = memoryview(self._buf).cast("B")
        if niov > self._niov:
            self._niov = max(niov, 2 * self._niov)
            self._local = (_IOVec * self._niov)()
            self._remote = (_IOVec * self._niov)()
            self._local_view = memoryview(self._local).cast("B")
            self._remote_view = memoryview(self._remote).cast("B")
        self._base = ctypes.addressof(self._buf)

    def _readv(self, ranges: Sequence[Tuple[int, int]]) -> int:
        """One syscall over ``ranges`` into the local buffer; returns the byte count or -errno.

        The iovec arrays are filled with one ``struct.pack_into`` each: setting ctypes fields
        one by one costs more per range than the kernel's work.
        """
        n = len(ranges)
        pack = self._packers.get(n)
        if pack is None:
            pack = self._packers[n] = struct.Struct("<%dQ" % (2 * n)).pack_into
        remote = [x for pair in ranges for x in pair]
        sizes = remote[1::2]
        starts = accumulate(sizes[:-1], initial=self._base)
        pack(self._local_view, 0, *[x for pair in zip(starts, sizes) for x in pair])
        pack(self._remote_view, 0, *remote)
        # never None here: __init__ refuses to make a reader without it
        result = _process_vm_readv(self.pid, self._local, n, self._remote, n, 0)  # type: ignore[misc]
        return result if result >= 0 else -ctypes.get_errno()

    def read(self, addr: int, size: int) -> bytes:
        if size > self._cap:
            self._grow(size, 1)
        n = self._readv(((addr, size),))
        if n != size:
            raise _read_error(self.pid, addr, size, n)
        return self._view[:size].tobytes()

    def read_many(self, ranges: Sequence[Tuple[int, int]]) -> List[Optional[bytes]]:
        out: List[Optional[bytes]] = []
        todo = list(ranges)
        while todo:
            batch = todo[:_IOV_MAX]
            need = sum(size for _, size in batch)
            if need > self._cap or len(batch) > self._niov:
                self._grow(need, len(batch))
            n = self._readv(batch)
            if n < 0 and n in (-errno.EPERM, -errno.ESRCH):
                raise _read_error(self.pid, batch[0][0], batch[0][1], n)
            got = max(n, 0)
            pos = 0
            done = 0
            # Ranges that fit entirely in the returned count were read; the first one that did
            # not is unreadable; the kernel stopped there, so retry what follows it.
            for addr, size in batch:
                if pos + size > got:
                    break
                out.append(self._view[pos:pos + size].tobytes())
                pos += size
                done += 1
            if done < len(batch):
                out.append(None)
                done += 1
            todo = todo[done:]
        return out


def _read_error(pid: int, addr: int, size: int, result: int) -> Exception:
    """Map a failed read to the error tree: EPERM/EACCES are permissions, the rest torn reads."""
    if result in (-errno.EPERM, -errno.EACCES):
        return permission_error(pid, "read the memory")
    if result == -errno.ESRCH:
        return TargetNotFound("process %d exited" % pid)
    if result < 0:
        why = os.strerror(-result)
    else:
        why = "short read (%d bytes)" % result
    return MemoryReadError("cannot read %d bytes at 0x%x in process %d: %s"
                           % (size, addr, pid, why))


# ----------------------------------------------------------------------------------------------
# /proc/PID/mem


class ProcMemReader:
    """``os.pread`` on a kept-open ``/proc/PID/mem`` fd: the cheapest small read."""

    def __init__(self, pid: int):
        self.pid = pid
        try:
            self.fd = os.open(proc_path(pid, "mem"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TargetNotFound("no process with PID %d" % pid) from None
        except PermissionError:
            raise permission_error(pid, "read the memory") from None

    def read(self, addr: int, size: int) -> bytes:
        try:
            data = os.pread(self.fd, size, addr)
        except OSError as exc:  # EIO: unmapped; EFAULT/EINVAL: address out of range
            raise _read_error(self.pid, addr, size, -(exc.errno or errno.EIO)) from None
        if len(data) != size:
            raise _read_error(self.pid, addr, size, len(data))
        return data

    def read_many(self, ranges: Sequence[Tuple[int, int]]) -> List[Optional[bytes]]:
        out: List[Optional[bytes]] = []
        fd = self.fd
        for addr, size in ranges:
            try:
                data = os.pread(fd, size, addr)
            except OSError:
                data = None
            out.append(data if data is not None and len(data) == size else None)
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class TargetMemory:
    """The reader the profiler uses: pread for small reads; for batched and large reads
    whichever of process_vm_readv and preads measures cheaper here.

    What a call costs depends on the kernel and the machine more than on the ranges: on some
    a ``process_vm_readv`` of many ranges costs less than as many ``pread``s, on others (a VM
    here) its fixed cost exceeds a dozen of them.  Consecutive preads spread a walk's copies
    over a little more time than one call's iovecs, but walks made of them came out no further
    from the stopped program's (docs/benchmarks.md, "Cost of one sample"), so either serves a
    walk that wants its copies of one moment; the first ``CALIBRATION_READS`` batched reads of
    each kind are timed, alternately, and the cheaper by median time per range is kept.
    Falls back to pread alone when process_vm_readv is unavailable (ENOSYS, or blocked by an
    old container seccomp profile).
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.mem = ProcMemReader(pid)
        self.vm: Optional[ProcessVmReader] = None
        try:
            vm = ProcessVmReader(pid)
            vm.read_many([(0, 8)])  # probe: EFAULT expected; ENOSYS/EPERM mean "not usable"
            self.vm = vm
        except (OSError, PermissionDenied):
            self.vm = None
        self.read_small = self.mem.read
        #: ns per range of the batched reads timed so far: (process_vm_readv, preads)
        self._timings: Tuple[List[float], List[float]] = ([], [])
        #: the batched reader kept once timed (None: still timing, or no process_vm_readv)
        self.batched: Optional[Callable[[Sequence[Tuple[int, int]]], List[Optional[bytes]]]] \
            = None if self.vm is not None else self.mem.read_many
        self._large_by_vm = self.vm is not None

    def read(self, addr: int, size: int) -> bytes:
        if size >= LARGE_READ and self._large_by_vm:
            return self.vm.read(addr, size)  # type: ignore[union-attr]  # (set with it)
        return self.mem.read(addr, size)

    def read_many(self, ranges: Sequence[Tuple[int, int]]) -> List[Optional[bytes]]:
        batched = self.batched
        if batched is not None and len(ranges) > 1:
            return batched(ranges)
        if len(ranges) < 2:
            return self.mem.read_many(ranges)
        return self._timed_read_many(ranges)

    def _timed_read_many(self, ranges: Sequence[Tuple[int, int]]) -> List[Optional[bytes]]:
        """A batched read while the two readers are still being compared (see the class)."""
        timings = self._timings
        by_preads = len(timings[0]) > len(timings[1])
        reader: MemoryReader = self.mem if by_preads else self.vm  # type: ignore[assignment]
        start = time.perf_counter_ns()
        out = reader.read_many(ranges)
        timings[by_preads].append((time.perf_counter_ns() - start) / len(ranges))
        if len(timings[1]) >= CALIBRATION_READS:
            vm_ns, pread_ns = (statistics.median(found) for found in timings)
            self._large_by_vm = vm_ns < pread_ns
            self.batched = (self.vm.read_many if self._large_by_vm  # type: ignore[union-attr]
                            else self.mem.read_many)
        return out

    def close(self) -> None:
        self.mem.close()


def read_cmdline(pid: int) -> List[str]:
    """A process's command line, [] when it cannot be read."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def read_cwd(pid: int) -> str:
    """A process's working directory, "" when it cannot be read."""
    try:
        return os.readlink("/proc/%d/cwd" % pid)
    except OSError:
        return ""
