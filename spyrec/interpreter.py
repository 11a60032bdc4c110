"""Attaching to a CPython process: find the runtime, the version and the layout, then sample.

Finding the interpreter:

1. The runtime lives in ``libpython3.N*.so`` when one is mapped (shared builds, uv/standalone
   builds, embedders), else in the executable (static builds such as Debian's python3.11).
2. ``_PyRuntime`` is a data symbol (``.gnu.hash`` / ``.dynsym``), else the start of the
   ``.PyRuntime`` section (3.10+), else a ``.symtab`` symbol, else (3.13+) the ``xdebugpy``
   cookie found in the file's writable mappings; address = st_value / sh_addr + load bias.
3. Version, best first: the ``xdebugpy`` cookie + PY_VERSION_HEX at ``_PyRuntime`` (3.13+); the
   ``Py_Version`` symbol (3.11+); the minor from the file name (``libpython3.9.so``,
   ``python3.9``) plus the version buffer ``Py_GetVersion()`` fills in ``.bss`` (e.g. ``3.9.18
   (main, ...``) for the micro.  A layout is only accepted after one thread state has been read
   back consistently (``tstate->interp == interp``).
4. 3.8-3.10 keep no kernel TID in the thread state: it is read from glibc's ``struct pthread``
   (``thread_id`` points at it), at an offset found now by scanning the main thread's struct for
   the PID (the main thread's TID), then checked against the other threads.
"""

import os
import re
import struct
import time
from typing import Dict, List, Optional, Tuple

from elftools.common.exceptions import ELFError

from spyrec.codeobjects import CodeCache, FrameInfo
from spyrec.errors import (MemoryReadError, NotPython, PermissionDenied, SpyError,
                           TargetNotFound, TargetReplaced, UnsupportedPython)
from spyrec.layouts import debug_offsets_size, layout_for, supported_range
from spyrec.layouts.base import Layout
from spyrec.process import (MemoryMap, TargetMemory, check_pid, executable_path,
                            namespace_pids, process_start_time, read_maps, read_text,
                            target_file, target_view, thread_ids)
from spyrec.pystrings import ObjectReader
from spyrec.symbols import ElfImage, load_elf
from spyrec.threadnames import ThreadNameReader
from spyrec.walker import StackWalker, ThreadStack

__all__ = ["PythonProcess", "ThreadStack", "FrameInfo"]

_LIBPYTHON = re.compile(r"^libpython(\d+)\.(\d+)([a-z]*)\.so")
_EXE_NAME = re.compile(r"^python(\d+)(?:\.(\d+))?([a-z]*)$")
#: Py_GetVersion()'s buffer: "3.9.18 (main, May  9 2026, 07:33:49) \n[GCC 12.2.0]".
_VERSION_BUFFER = re.compile(rb"(?<![\w.+])(\d)\.(\d{1,2})\.(\d{1,2})((?:a|b|rc)\d{1,2})?\+? \(")
_RELEASE_LEVELS = {0xA: "a", 0xB: "b", 0xC: "rc", 0xF: ""}
_U64 = struct.Struct("<Q")
#: How much of glibc's struct pthread to scan for the TID, and where glibc 2.36 keeps it on
#: x86-64 (only a tie-breaker: the offset is always measured).
_PTHREAD_SCAN = 2048
_GLIBC_TID_OFFSET = 720
#: threading._active is re-read after this long, or after _NAMES_REFRESH for an unknown TID.
_NAMES_TTL = 5.0
_NAMES_REFRESH = 0.2
#: The list of interpreters (for threading_name) is read again after this long.
_INTERPS_TTL = 1.0


def version_from_hex(value: int) -> Tuple[Tuple[int, int, int], str]:
    """PY_VERSION_HEX -> ((major, minor, micro), "3.13.0rc1")."""
    major, minor, micro = value >> 24, (value >> 16) & 0xFF, (value >> 8) & 0xFF
    level, serial = (value >> 4) & 0xF, value & 0xF
    text = "%d.%d.%d" % (major, minor, micro)
    if level != 0xF:
        text += "%s%d" % (_RELEASE_LEVELS.get(level, "?"), serial)
    return (major, minor, micro), text


class RuntimeFile:
    """The mapped ELF file that holds ``_PyRuntime``, and where it is loaded."""

    def __init__(self, pid: int, path: str, mappings: List[MemoryMap]):
        self.path = target_view(pid, path)  # as the target sees it (" (deleted)" stripped)
        self.mappings = mappings
        self.name = os.path.basename(path)
        self.elf: ElfImage = load_elf(target_file(pid, mappings[0]))
        self.bias = self.elf.load_bias(mappings)

    def address(self, symbol: str) -> Optional[int]:
        value = self.elf.symbol(symbol)
        return None if value is None else value + self.bias

    def name_version(self) -> Tuple[Optional[int], Optional[int], str]:
        """(major, minor, abi flags) from ``libpython3.9d.so`` / ``python3.9``; None if absent."""
        m = _LIBPYTHON.match(self.name) or _EXE_NAME.match(self.name)
        if not m:
            return None, None, ""
        return int(m.group(1)), (int(m.group(2)) if m.group(2) else None), m.group(3) or ""


def _find_runtime_file(pid: int, maps: List[MemoryMap], exe: str) -> RuntimeFile:
    by_path: Dict[str, List[MemoryMap]] = {}
    for m in maps:
        if m.path.startswith("/"):
            by_path.setdefault(m.path, []).append(m)
    for path, mappings in by_path.items():
        if _LIBPYTHON.match(os.path.basename(path)):
            return RuntimeFile(pid, path.replace(" (deleted)", ""), mappings)
    exe_maps = by_path.get(exe) or by_path.get(exe + " (deleted)")
    if not exe_maps:
        raise NotPython("process %d (%s) has no file mappings we can read" % (pid, exe))
    return RuntimeFile(pid, exe.replace(" (deleted)", ""), exe_maps)


def _bound_states(stacks: List[ThreadStack]) -> List[ThreadStack]:
    """``stacks`` without the thread states not bound to a thread of their own.

    A thread state is made by the thread that starts a new one, before the new thread runs:
    3.8-3.11 give it the creator's thread ids until the new thread sets its own
    (``thread_run`` in Modules/_threadmodule.c), 3.12+ leave them 0 until then
    (``bind_tstate`` in Python/pystate.c).  Such a state has no frames; sampled, it would add
    a sample without Python frames to its creator, or a thread 0 that does not exist.  On
    3.8-3.10 a thread's TID read as 0 while others' are known is a thread ending: the kernel
    clears the TID in its pthread as it exits (CLONE_CHILD_CLEARTID).
    """
    known = any(stack.native_tid for stack in stacks)
    if all(stack.frames and (stack.native_tid or not known) for stack in stacks):
        return stacks
    taken = {stack.native_tid for stack in stacks if stack.frames}
    kept = []
    for stack in reversed(stacks):  # new thread states are first in the list: keep the oldest
        tid = stack.native_tid
        if known and not tid:
            continue
        if stack.frames:
            kept.append(stack)
        elif tid and tid not in taken:
            kept.append(stack)
            taken.add(tid)
    kept.reverse()
    return kept


class PythonProcess:
    """A running CPython process we can sample.  Build it with ``PythonProcess.attach(pid)``."""

    def __init__(self, pid: int, mem: TargetMemory, runtime_file: RuntimeFile, runtime: int,
                 version: Tuple[int, int, int], version_string: str, layout: Layout,
                 executable: str, start_time: Optional[int]):
        self.pid = pid
        self.mem = mem
        self.version = version
        self.version_string = version_string
        self.layout = layout
        self.executable = target_view(pid, executable)  # as the target sees it
        self.runtime_file = runtime_file.path
        self.runtime_address = runtime
        #: (start, inode) of the mapping that holds the runtime (see _check_not_replaced).
        self._runtime_map = None
        self._start_time = start_time
        rf = runtime_file
        types = {name: rf.address(name) for name in
                 ("PyCode_Type", "PyUnicode_Type", "PyBytes_Type", "PyFrame_Type",
                  "PyDict_Type", "PyLong_Type", "PyModule_Type")}
        self.objects = ObjectReader(mem, layout.strings, layout.ob_type,
                                    types["PyUnicode_Type"], types["PyBytes_Type"])
        self.codes = CodeCache(mem, layout, self.objects, types["PyCode_Type"])
        self.walker = StackWalker(mem, layout, runtime, self.codes,
                                  frame_type=types["PyFrame_Type"])
        self.thread_names = ThreadNameReader(mem, layout, self.objects, types)
        self._names: Dict[int, str] = {}  # native TID -> threading name
        self._names_read = -1e9  # monotonic time of the last read of threading._active
        self._comms: Dict[int, Tuple[float, Optional[str]]] = {}
        self._interps: List[int] = []
        self._interps_read = -1e9  # monotonic time the list of interpreters was read
        self._tid_offset_retry = 0.0
        self._closed = False

    # -- attach ------------------------------------------------------------------------------

    @classmethod
    def attach(cls, pid: int) -> "PythonProcess":
        """Attach to ``pid`` (nothing is stopped or modified in the target).

        Raises TargetNotFound, PermissionDenied, NotPython or UnsupportedPython, each with a
        one-line message (naming the version when one was found).
        """
        start_time = check_pid(pid)
        # The executable first, the memory fd second: a /proc/PID/mem fd stays bound to the
        # address space it was opened on, so one opened before an exec (``chroot ROOT python``
        # in launch mode: the PID runs chroot first) reads nothing afterwards.  In this order an
        # exec in between leaves us looking at the old program, which is not Python (a retry).
        exe = executable_path(pid)
        mem = TargetMemory(pid)
        try:
            return cls._attach(pid, mem, start_time, exe)
        except BaseException:
            mem.close()
            raise

    @classmethod
    def _attach(cls, pid: int, mem: TargetMemory, start_time: Optional[int],
                exe: str) -> "PythonProcess":
        maps = read_maps(pid)
        try:
            rf = _find_runtime_file(pid, maps, exe)
        except (OSError, ELFError) as exc:
            raise NotPython("process %d (%s): cannot read its binary: %s" % (pid, exe, exc))
        major, minor, flags = rf.name_version()
        if major is not None and major < 3 or (major == 3 and minor is not None and minor < 8):
            _, text = _scan_version_buffer(mem, rf, minor)
            raise UnsupportedPython("Python %s is not supported: it is older than the versions "
                                    "spyrec reads (CPython %s)"
                                    % (text or "%d.%d" % (major, minor or 0), supported_range()))
        runtime = _locate_runtime(mem, rf)
        if runtime is None:
            if major is None:
                raise NotPython("process %d (%s) is not a CPython interpreter: no libpython is "
                                "mapped and the executable has no _PyRuntime" % (pid, exe))
            raise UnsupportedPython("process %d (%s): found no _PyRuntime in %s (a CPython "
                                    "older than 3.7, or stripped of its symbols?)"
                                    % (pid, exe, rf.path))
        if "d" in flags:
            raise UnsupportedPython("process %d runs a debug build of Python (%s), whose object "
                                    "layout spyrec does not know" % (pid, rf.name))
        if "t" in flags:
            raise UnsupportedPython("process %d runs a free-threaded build of Python (%s), which "
                                    "spyrec cannot walk yet" % (pid, rf.name))
        version, version_string = _detect_version(mem, rf, runtime, minor)
        if version is None:
            raise UnsupportedPython("process %d (%s): cannot tell which Python version %s is"
                                    % (pid, exe, rf.path))
        size = debug_offsets_size(version, version_string)
        try:
            blob = mem.read(runtime, size) if size else None
        except MemoryReadError:
            # Right after an exec the kernel may not have mapped the data segment yet (launch
            # mode retries NotPython); a process that stays like this is not a sane CPython.
            raise NotPython("process %d (%s): _PyRuntime at %#x is not readable (yet)"
                            % (pid, exe, runtime)) from None
        layout = layout_for(version, version_string, blob)
        proc = cls(pid, mem, rf, runtime, version, version_string, layout, exe, start_time)
        proc._runtime_map = next(((m.start, m.inode) for m in maps
                                  if m.start <= runtime < m.end), None)
        proc._validate()
        proc._setup_thread_ids()
        if layout.guessed_from is not None:
            proc._validate_guess()
        return proc

    def _validate(self) -> None:
        """Read the interpreter back: interpreters.head, its first thread state's interp link."""
        lay = self.layout
        try:
            interp = _U64.unpack(self.mem.read(
                self.runtime_address + lay.runtime.interpreters_head, 8))[0]
            if not interp:
                # Right after exec (launch mode) or during exit: nothing to sample, and on
                # 3.8-3.10 the version may not be knowable yet.  NotPython lets a launcher
                # retry until the interpreter is up.
                raise NotPython("process %d: its Python interpreter is not initialised (yet)"
                                % self.pid)
            tstate = _U64.unpack(self.mem.read(interp + lay.interp.tstate_head, 8))[0]
            if tstate:
                back = _U64.unpack(self.mem.read(tstate + lay.thread.interp, 8))[0]
                if back != interp:
                    raise MemoryReadError("tstate->interp mismatch")
        except MemoryReadError as exc:
            if not self.alive():
                raise TargetNotFound("process %d exited" % self.pid) from None
            raise UnsupportedPython("Python %s in process %d does not match the %s layout (%s)"
                                    % (self.version_string, self.pid, lay.name, exc)) from None

    def _validate_guess(self) -> None:
        """A minor newer than spyrec knows, read with the newest field list (its blob passed
        every static check): accept it only if a live walk checks out too.

        Every thread state must link back to its interpreter and walk without a torn read; its
        kernel TID must be one of the process's threads, the main thread (TID = PID) among
        them; and the frames must be code objects whose file and name decode, with at least one
        line number among them.  Fields
        the blob does not describe (owner values, tag bits, the line-table format) would break
        one of these.  Refuses with UnsupportedPython naming the version and the failed check.
        """
        def refuse(problem: str) -> None:
            if not self.alive():
                raise TargetNotFound("process %d exited" % self.pid)
            raise UnsupportedPython(
                "Python %s is newer than spyrec knows, and walking it with the %d.%d layout "
                "failed (%s): spyrec needs a %d.%d entry in spyrec/layouts/debug_offsets.py"
                % ((self.version_string,) + self.layout.guessed_from + (problem,)
                   + self.version[:2]))

        stacks = self.walker.sample()
        if not stacks:
            refuse("no thread state found")
        tids = set(thread_ids(self.pid))
        frames = 0
        for stack in stacks:
            if stack.torn:
                refuse("a torn walk of thread %#x" % stack.python_thread_id)
            if stack.native_tid not in tids:
                refuse("thread %#x has TID %d, not one of the process's"
                       % (stack.python_thread_id, stack.native_tid))
            for key, offset in stack.frames:
                try:
                    info = self.codes.describe(key, offset)
                except MemoryReadError as exc:
                    refuse("a frame does not decode: %s" % exc)
                if not info.filename or not info.name or info.line < 0:
                    refuse("a frame decodes to %r" % (info,))
                frames += info.line > 0
        if self.pid not in {stack.native_tid for stack in stacks}:
            refuse("no thread state of the main thread")
        if not frames:
            refuse("no Python frame with a line number found")

    def _setup_thread_ids(self) -> None:
        """Kernel TIDs: namespace translation, and the struct pthread offset for <=3.10."""
        nspids = namespace_pids(self.pid)
        own_pid = nspids[-1] if nspids else self.pid
        if len(nspids) > 1 and own_pid != self.pid:
            self.walker.host_tid = NamespaceTids(self.pid).host_tid
        if not self.layout.has_native_thread_id:
            offset = self._find_pthread_tid_offset(own_pid)
            self.walker.pthread_tid_offset = offset
            # Not found (no thread yet, or all exiting): look again in a second.
            self._tid_offset_retry = time.monotonic() + 1.0 if offset is None else 0.0

    def _find_pthread_tid_offset(self, own_pid: int) -> Optional[int]:
        """Scan each thread's struct pthread for a TID; pick the offset most threads agree on.

        The main thread's TID equals the PID, so the offsets where its struct holds the PID are
        the candidates; the other threads (TIDs from /proc/PID/task, translated into the
        target's namespace) vote between them.  Threads exiting meanwhile may have stale
        structs, so this is a vote, not an intersection.  Without a main thread among the
        thread states, every offset holding some thread's TID is a candidate.
        """
        tids = set(thread_ids(self.pid))
        if own_pid != self.pid:
            tids = {ns[-1] for ns in (namespace_pids(self.pid, t) for t in tids) if ns}
        try:
            pthreads = [s.python_thread_id for s in self.walker.sample() if s.python_thread_id]
        except MemoryReadError:
            return None
        blocks = []
        for pthread in reversed(pthreads):  # the main thread state is the last in the list
            try:
                block = self.mem.read(pthread, _PTHREAD_SCAN)
            except MemoryReadError:
                continue
            blocks.append(struct.unpack("<%di" % (_PTHREAD_SCAN // 4), block))
        if not blocks:
            return None
        main = {4 * i for i, v in enumerate(blocks[0]) if v == own_pid}
        seen: Dict[int, set] = {}
        for values in blocks:
            for i, v in enumerate(values):
                if v in tids and (not main or 4 * i in main):
                    seen.setdefault(4 * i, set()).add(v)
        if not seen:
            return None
        # Each thread has its own TID, so the right offset holds the most *distinct* TIDs (in
        # a PID namespace TIDs are small numbers that other fields hold too).  A tie (a lone
        # thread) goes to the offset nearest glibc's x86-64 one.
        return max(seen, key=lambda off: (len(seen[off]), -abs(off - _GLIBC_TID_OFFSET)))

    # -- sampling ----------------------------------------------------------------------------

    @property
    def torn_reads(self) -> int:
        return self.walker.torn_reads

    def sample_threads(self, still=frozenset()) -> List[ThreadStack]:
        """One stack per Python thread state of every interpreter.

        ``still``: native TIDs of threads that have not run since the last call (their last
        stacks are reused, see ``StackWalker.sample``).  Never raises on torn reads (they are
        counted in ``torn_reads``); raises TargetNotFound once the process is gone.
        """
        if self._tid_offset_retry and time.monotonic() >= self._tid_offset_retry:
            self._setup_thread_ids()
        try:
            stacks = self.walker.sample(still)
        except (MemoryReadError, PermissionDenied, struct.error, OverflowError, ValueError):
            if not self.alive():
                raise TargetNotFound("process %d exited" % self.pid) from None
            self.walker.torn_reads += 1
            stacks = []
        if not stacks:
            self._check_not_replaced()
        return _bound_states(stacks)

    def sample_some_threads(self, tids, still=frozenset()) -> Optional[List[ThreadStack]]:
        """The stacks of the threads ``tids`` alone, when the caller knows no other thread ran
        since the last call (see ``StackWalker.sample_some``); None when ``sample_threads()``
        must be called instead."""
        if self._tid_offset_retry and time.monotonic() >= self._tid_offset_retry:
            return None
        try:
            stacks = self.walker.sample_some(tids, still)
        except (MemoryReadError, PermissionDenied, struct.error, OverflowError, ValueError):
            return None
        return None if stacks is None else _bound_states(stacks)

    def _check_not_replaced(self) -> None:
        """Raise TargetReplaced when the process no longer maps the runtime that was attached.

        After an exec the same PID runs a new program: the old runtime's address is unmapped
        or holds something else, and walks find no thread.  Asked only then (a read of
        /proc/PID/maps), so a live interpreter pays nothing.
        """
        try:
            maps = read_maps(self.pid)
            exe = executable_path(self.pid)
        except (OSError, SpyError):
            return  # gone, or going: the next round says so
        if not maps:
            return  # exiting: its memory is already released
        address = self.runtime_address
        now = next(((m.start, m.inode) for m in maps if m.start <= address < m.end), None)
        if self._runtime_map is not None and now != self._runtime_map:
            replaced = TargetReplaced("process %d replaced its program (exec): now %s"
                                      % (self.pid, exe))
            replaced.program = exe
            raise replaced

    def thread_name(self, native_tid: int) -> Optional[str]:
        """The thread's ``threading`` name, else its OS name if the program set one, else None.

        Names come from ``threading._active`` in the target (see threadnames.py, ~1 ms), read
        again at most every ``_NAMES_REFRESH`` seconds when an unknown TID is asked about and
        otherwise reused for ``_NAMES_TTL`` seconds; failures (torn reads, no threading module)
        are cached the same way.  Threads not started by ``threading`` fall back to
        /proc/PID/task/TID/comm when it differs from the process's own name (CPython <= 3.13
        leaves thread comms alone; a program may rename them).  Never raises.
        """
        now = time.monotonic()
        age = now - self._names_read
        if age >= _NAMES_TTL or (native_tid not in self._names and age >= _NAMES_REFRESH):
            self._names_read = now
            self._names = self._read_thread_names()
        name = self._names.get(native_tid)
        return name if name is not None else self._comm_name(native_tid, now)

    def threading_name(self, ident: int, native_tid: int) -> Optional[str]:
        """The name ``threading`` gave the thread ``ident`` (a ThreadStack's python_thread_id),
        from ``threading._active`` now (a few reads, see threadnames.py), or None when it is not
        there: not started by ``threading``, or not registered yet.  Never raises.

        Idents are reused as soon as a thread ends (glibc hands its stack, hence its
        ``pthread_t``, to the next thread), so the entry is taken only when its ``_native_id``
        is ``native_tid``: the next thread may have registered under the ident by the time of
        the lookup.  With ``native_tid`` unknown (0) the ident alone decides.
        """
        try:
            for interp in self._interpreters():
                found = self.thread_names.name_of(interp, ident)
                if found is not None:
                    name, native = found
                    host_tid = self.walker.host_tid
                    if native is not None and host_tid is not None:
                        native = host_tid(native)
                    if not native_tid or native == native_tid:
                        return name
        except (MemoryReadError, struct.error, OverflowError, ValueError):
            self._interps_read = -1e9  # read the list again next time
        return None

    def _interpreters(self) -> List[int]:
        """Every interpreter's address, read again after ``_INTERPS_TTL`` seconds."""
        now = time.monotonic()
        if now - self._interps_read >= _INTERPS_TTL:
            lay = self.layout
            interps = []
            interp = _U64.unpack(self.mem.read(
                self.runtime_address + lay.runtime.interpreters_head, 8))[0]
            while interp and len(interps) < 64:
                interps.append(interp)
                interp = _U64.unpack(self.mem.read(interp + lay.interp.next, 8))[0]
            self._interps, self._interps_read = interps, now
        return self._interps

    def find_threading(self) -> None:
        """Find ``threading._active`` in every interpreter now (a millisecond or more: every
        ``sys.modules`` key is decoded), so that the first rounds' lookups are cheap."""
        try:
            for interp in self._interpreters():
                self.thread_names.active(interp)
        except (MemoryReadError, struct.error, OverflowError, ValueError):
            pass

    def os_thread_name(self, native_tid: int) -> Optional[str]:
        """/proc/PID/task/TID/comm when it differs from the process's own name, else None.

        CPython <= 3.13 leaves thread comms alone (a program may set them); 3.14+ sets them to
        the ``threading`` name cut to 15 bytes (Lib/threading.py ``_set_os_name``).
        """
        comm = read_text(self.pid, "task", str(native_tid), "comm")
        if comm is None:
            return None
        comm = comm.rstrip("\n")
        process_comm = (read_text(self.pid, "comm") or "").rstrip("\n")
        return comm if comm and comm != process_comm else None

    def _read_thread_names(self) -> Dict[int, str]:
        names: Dict[int, str] = {}
        unmatched: Dict[int, str] = {}
        lay = self.layout
        try:
            interp = _U64.unpack(self.mem.read(
                self.runtime_address + lay.runtime.interpreters_head, 8))[0]
            for _ in range(64):  # every interpreter
                if not interp:
                    break
                by_native, by_ident = self.thread_names.names(interp)
                names.update(by_native)
                unmatched.update(by_ident)
                interp = _U64.unpack(self.mem.read(interp + lay.interp.next, 8))[0]
        except (MemoryReadError, struct.error, OverflowError, ValueError):
            pass
        host_tid = self.walker.host_tid
        if host_tid is not None:
            names = {host_tid(tid): name for tid, name in names.items()}
        if unmatched:
            # Threads without a _native_id (not started yet, or 3.8's dummy threads): match
            # their idents through a sample.
            try:
                for stack in self.walker.sample():
                    name = unmatched.get(stack.python_thread_id)
                    if name is not None and stack.native_tid:
                        names.setdefault(stack.native_tid, name)
            except (MemoryReadError, struct.error, OverflowError, ValueError):
                pass
        return names

    def _comm_name(self, native_tid: int, now: float) -> Optional[str]:
        cached = self._comms.get(native_tid)
        if cached is not None and now - cached[0] < _NAMES_TTL:
            return cached[1]
        name = self.os_thread_name(native_tid)
        self._comms[native_tid] = (now, name)
        return name

    def alive(self) -> bool:
        start = process_start_time(self.pid)
        return start is not None and (self._start_time is None or start == self._start_time)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.mem.close()

    def __enter__(self) -> "PythonProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<PythonProcess pid=%d python=%s layout=%s>" % (self.pid, self.version_string,
                                                                self.layout.name)


class NamespaceTids:
    """Maps TIDs of a PID-namespaced target (what 3.11+ stores) to host TIDs (/proc/PID/task).

    Built from the ``NSpid:`` lines of /proc/PID/task/*/status (host id first, innermost last);
    refreshed when an unknown TID shows up, at most every 50 ms.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self._map: Dict[int, int] = {}
        self._refreshed = 0.0
        self._refresh()

    def _refresh(self) -> None:
        self._refreshed = time.monotonic()
        for tid in thread_ids(self.pid):
            ns = namespace_pids(self.pid, tid)
            if ns:
                self._map[ns[-1]] = ns[0]

    def host_tid(self, ns_tid: int) -> int:
        host = self._map.get(ns_tid)
        if host is None and time.monotonic() - self._refreshed > 0.05:
            self._refresh()
            host = self._map.get(ns_tid)
        return host or 0


def _locate_runtime(mem: TargetMemory, rf: RuntimeFile) -> Optional[int]:
    """Address of ``_PyRuntime``: exported symbol, ``.PyRuntime`` section (3.10+), ``.symtab``
    (unstripped builds that do not export it, ~0.4 s), or, for 3.13+ binaries without any of
    these, the ``xdebugpy`` cookie in a writable mapping of the file (8-aligned, followed by a
    version word whose top byte is the major version 3; libpython3.13 also holds the 8 bytes
    unaligned in ``.text``, hence both checks)."""
    runtime = rf.address("_PyRuntime")
    if runtime is not None:
        return runtime
    section = rf.elf.section(".PyRuntime")
    if section is not None:
        return section[0] + rf.bias
    value = rf.elf.symbol("_PyRuntime", slow=True)
    if value is not None:
        return value + rf.bias
    for m in rf.mappings:
        if "w" not in m.perms or m.end - m.start > 64 << 20:
            continue
        try:
            data = mem.read(m.start, m.end - m.start)
        except MemoryReadError:
            continue
        at = data.find(b"xdebugpy")
        while at >= 0:
            if at % 8 == 0 and len(data) >= at + 16 and data[at + 15] == 3:
                return m.start + at
            at = data.find(b"xdebugpy", at + 1)
    return None


def _detect_version(mem: TargetMemory, rf: RuntimeFile, runtime: int, minor: Optional[int]):
    """((major, minor, micro), text) by the best available method, or (None, "")."""
    try:
        head = mem.read(runtime, 16)
        if head[:8] == b"xdebugpy":
            return version_from_hex(_U64.unpack_from(head, 8)[0])
    except MemoryReadError:
        pass
    py_version = rf.address("Py_Version")
    if py_version is not None:
        try:
            return version_from_hex(_U64.unpack(mem.read(py_version, 8))[0])
        except MemoryReadError:
            pass
    version, text = _scan_version_buffer(mem, rf, minor)
    if version is not None:
        return version, text
    if minor is not None:
        return (3, minor, 0), "3.%d" % minor
    return None, ""


def _scan_version_buffer(mem: TargetMemory, rf: RuntimeFile, minor: Optional[int]):
    """Find ``Py_GetVersion()``'s static buffer in .bss (3.8-3.10 have no Py_Version).

    It can false-match (py-spy #731 found "3.8.3 or higher" in a libpython), so the match must
    start a NUL-delimited string, agree with the file-name minor when there is one, and the
    layout it selects is validated by a walk afterwards.
    """
    section = rf.elf.section(".bss")
    if section is None:
        return None, ""
    addr, size = section
    try:
        data = mem.read(addr + rf.bias, size)
    except MemoryReadError:
        return None, ""
    for m in _VERSION_BUFFER.finditer(data):
        if m.start() and data[m.start() - 1] != 0:
            continue
        major, found_minor, micro = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if minor is not None and found_minor != minor:
            continue
        text = m.group(0)[:-2].decode("ascii")
        return (major, found_minor, micro), text
    return None, ""
