"""A target's threads: which kernel thread each thread state is, and what it is called.

3.8-3.10 keep no kernel TID in the thread state: it is read from glibc's ``struct pthread``
(``thread_id`` points at it), at an offset found by scanning the main thread's struct for the
PID (the main thread's TID), then checked against the other threads.  A target in a PID
namespace stores its own TIDs, mapped here to the host's.  Names come from ``threading``'s
registry in the target (spyrec.threadnames), else from /proc.
"""

import struct
import time
from typing import Callable, Dict, List, Optional, Tuple

from spyrec.codeobjects import ADDRESS_MASK, CodeCache
from spyrec.errors import MemoryReadError
from spyrec.layouts.base import Layout
from spyrec.process import TargetMemory, namespace_pids, read_text, thread_ids
from spyrec.threadnames import ThreadNameReader
from spyrec.walkcommon import interpreter_list
from spyrec.walker import StackWalker, ThreadStack

_U64 = struct.Struct("<Q")
#: How much of glibc's struct pthread to scan for the TID, and where glibc 2.36 keeps it on
#: x86-64 (only a tie-breaker: the offset is always measured).
_PTHREAD_SCAN = 2048
_GLIBC_TID_OFFSET = 720
#: The list of interpreters (for threading_name) is read again after this long.
_INTERPS_TTL = 1.0
#: How far thread_object follows a thread's chunks (3.11+) or frames (3.8-3.10) to its first
#: frame: a thread it is asked about has just started.
MAX_CHUNKS = 16
MAX_FRAMES = 64
#: Tag bits of a _PyStackRef (3.14+ locals), clear in any object's address.
STACKREF_TAGS = 7


def find_pthread_tid_offset(pid: int, mem: TargetMemory, walker: StackWalker, own_pid: int) -> Optional[int]:
    """Scan each thread's struct pthread for a TID; pick the offset most threads agree on.

    The main thread's TID equals the PID, so the offsets where its struct holds the PID are
    the candidates; the other threads (TIDs from /proc/PID/task, translated into the
    target's namespace) vote between them.  Threads exiting meanwhile may have stale
    structs, so this is a vote, not an intersection.  Without a main thread among the
    thread states, every offset holding some thread's TID is a candidate.
    """
    tids = set(thread_ids(pid))
    if own_pid != pid:
        tids = {ns[-1] for ns in (namespace_pids(pid, t) for t in tids) if ns}
    try:
        pthreads = [s.python_thread_id for s in walker.sample() if s.python_thread_id]
    except MemoryReadError:
        return None
    blocks = []
    for pthread in reversed(pthreads):  # the main thread state is the last in the list
        try:
            block = mem.read(pthread, _PTHREAD_SCAN)
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


def bound_states(stacks: List[ThreadStack], tids_known: bool = False,
                 whole: bool = True) -> List[ThreadStack]:
    """``stacks`` without the thread states not bound to a thread of their own.

    A thread state is made by the thread that starts a new one, before the new thread runs:
    3.8-3.11 give it the creator's thread ids until the new thread sets its own
    (``thread_run`` in Modules/_threadmodule.c), 3.12+ leave them 0 until then
    (``bind_tstate`` in Python/pystate.c).  Such a state has no frames; sampled, it would add
    a sample without Python frames to its creator, or a thread 0 that does not exist.  On
    3.8-3.10 a thread's TID read as 0 while others' are known is a thread ending: the kernel
    clears the TID in its pthread as it exits (CLONE_CHILD_CLEARTID).  ``tids_known``: TIDs
    can be read (3.11+, or the pthread's TID offset is found), so a TID 0 is such a thread
    even when it is the only one sampled (a round of the running threads alone).
    ``whole``: the walk reached the end of the thread list.  In a list cut short (a state
    freed under the walk) the creator's own state may lie past the cut, so a state without
    frames tells nothing of its thread.
    """
    known = tids_known or any(stack.native_tid for stack in stacks)
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
        elif tid and whole and tid not in taken:
            kept.append(stack)
            taken.add(tid)
    kept.reverse()
    return kept


def one_stack_per_thread(stacks: List[ThreadStack]) -> List[ThreadStack]:
    """``stacks`` with the thread states of a thread in several interpreters made one stack.

    A thread that calls into another interpreter (3.14's ``concurrent.interpreters`` and
    InterpreterPoolExecutor, ``_xxsubinterpreters`` before) swaps in a thread state of that
    interpreter and runs there, its state in the first one keeping the frames that made the
    call (``_PyThreadState_Swap`` in Python/pystate.c).  Sampled apart, such a thread would
    count twice a round, once in the call.  Interpreters are listed newest first (each new one
    becomes ``interpreters.head``, Python/pystate.c), so the state met first is the one called
    into: its frames go innermost, above the caller's.  (A call from a newer interpreter into
    an older one, such as a subinterpreter's thread calling into the main one, would be
    joined the other way round.)
    """
    tids = [stack.native_tid for stack in stacks if stack.native_tid]
    if len(tids) == len(set(tids)):
        return stacks
    merged: List[ThreadStack] = []
    at: Dict[int, int] = {}
    for stack in stacks:
        tid = stack.native_tid
        if not tid or tid not in at:
            if tid:
                at[tid] = len(merged)
            merged.append(stack)
            continue
        inner = merged[at[tid]]
        # Each part's runs of the eval loop count its own frames: kept when both parts have
        # them, or one part has no frames (see spyrec.nativestacks).
        runs = inner.runs + stack.runs if inner.runs and stack.runs else \
            inner.runs if not stack.frames else stack.runs if not inner.frames else ()
        merged[at[tid]] = inner._replace(
            frames=inner.frames + stack.frames, holds_gil=inner.holds_gil or stack.holds_gil,
            torn=inner.torn or stack.torn, read_ns=inner.read_ns or stack.read_ns,
            in_gc=inner.in_gc or stack.in_gc, task=inner.task or stack.task,
            copied=inner.copied or stack.copied, runs=runs,
            verified=inner.verified and stack.verified)
    return merged


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


class ThreadNaming:
    """The names of a target's threads, as ``threading`` and the kernel know them."""

    def __init__(self, pid: int, mem: TargetMemory, layout: Layout, runtime: int,
                 reader: ThreadNameReader, host_tid: Callable[[], Optional[Callable[[int], int]]],
                 codes: Optional[CodeCache] = None):
        self.pid = pid
        self.mem = mem
        self.layout = layout
        self.runtime = runtime
        self.reader = reader
        self.codes = codes
        #: The walker's TID mapping as it stands (set once thread ids are set up).
        self.host_tid = host_tid
        self._interps: List[int] = []
        self._interps_read = -1e9  # monotonic time the list of interpreters was read

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
            # The main interpreter first (the last listed): a thread that called into another
            # interpreter is that one's main thread there, "MainThread" in its ``threading``.
            for interp in reversed(self._interpreters()):
                found = self.reader.name_of(interp, ident)
                if found is not None:
                    name, native = found
                    host_tid = self.host_tid()
                    if native is not None and host_tid is not None:
                        native = host_tid(native)
                    if not native_tid or native == native_tid:
                        return name
        except (MemoryReadError, struct.error, OverflowError, ValueError):
            self._interps_read = -1e9  # read the list again next time
        return None

    def thread_object(self, tstate: int, outermost: Tuple[int, int], first_frame: int = 0,
                      root_chunk: Optional[Tuple[int, int, bytes]] = None) -> int:
        """The address of the Thread object a thread's outermost frame, ``outermost`` (the
        walker's (code key, offset)), runs ``Thread._bootstrap`` for, else 0.  Never raises.

        ``threading._active`` has a thread only once its ``_bootstrap_inner`` runs, and a
        thread that lives a few ms may be sampled only before, or only after it left: its first
        frame, ``_bootstrap(self)`` (Lib/threading.py 3.8-3.15), holds its Thread as its first
        local from start to end.  That frame is the first of the thread's root datastack chunk
        (3.11+), or the end of its frame chain.  A walk that just read it gives its address
        (``first_frame``, <=3.10) or its chunk's copy (``root_chunk``: (address, end, bytes),
        3.11+), taken as walked: the thread may end any moment.
        """
        if self.codes is None or self.layout.awaits is None:
            return 0
        localsplus = self.layout.awaits.localsplus
        try:
            where = self.codes.describe(*outermost)
            if where.name != "_bootstrap" or not where.filename.endswith("threading.py"):
                return 0
            code = outermost[0] & ADDRESS_MASK
            if root_chunk is not None and self.layout.chunk is not None:
                start, end, data = root_chunk
                frame = self._first_in_chunk(start, data, code)
                if frame and frame + localsplus + 8 <= end:
                    return _U64.unpack_from(data, frame - start + localsplus)[0] & ~STACKREF_TAGS
            elif first_frame and self.layout.chunk is None:
                fr = self.layout.frame
                data = self.mem.read(first_frame, localsplus + 8)
                if _U64.unpack_from(data, fr.code)[0] == code:
                    return _U64.unpack_from(data, localsplus)[0]
                return 0
            frame = self._first_frame(tstate, code)
            if not frame:
                return 0
            thread = _U64.unpack(self.mem.read(frame + localsplus, 8))[0]
            return thread & ~STACKREF_TAGS
        except (MemoryReadError, struct.error, OverflowError, ValueError):
            return 0

    def thread_name(self, thread: int, ident: int,
                    native_tid: int) -> Optional[Tuple[str, bool]]:
        """(``_name``, whether its ids are both set) of the Thread object at ``thread``
        (``thread_object``), or None.  Never raises.

        A Thread read a moment after its thread's walk may be another one: the thread ended,
        its Thread freed and the memory reused by the next.  So its ``_ident`` must be
        ``ident`` and its ``_native_id`` ``native_tid``, each where it is set (one after the
        other as the thread starts, Lib/threading.py ``_bootstrap_inner``); where either is
        not, the caller must know by other means that the Thread is still the thread's.
        """
        try:
            found = dict(self.reader.attributes(thread, ("_name", "_ident", "_native_id")))
            if "_name" not in found or "_ident" not in found or "_native_id" not in found:
                return None
            ident_found, native = (None if self.reader.is_none(found[key])
                                   else self.reader.read_int(found[key])
                                   for key in ("_ident", "_native_id"))
            if native is not None:
                host_tid = self.host_tid()
                native = host_tid(native) if host_tid is not None else native
            if ident_found not in (None, ident) or native not in (None, native_tid):
                return None
            started = ident_found is not None and native is not None
            return self.reader.strings.read_str(found["_name"]), started
        except (MemoryReadError, struct.error, OverflowError, ValueError):
            return None

    def _first_frame(self, tstate: int, code: int) -> int:
        """The address of a thread's first Python frame when it runs ``code``, else 0."""
        lay = self.layout
        fr = lay.frame
        if lay.chunk is not None and lay.thread.datastack_chunk is not None:
            chunk = _U64.unpack(self.mem.read(tstate + lay.thread.datastack_chunk, 8))[0]
            for _ in range(MAX_CHUNKS):
                previous = _U64.unpack(self.mem.read(chunk + lay.chunk.previous, 8))[0]
                if not previous:
                    break
                chunk = previous
            else:
                return 0
            return self._first_in_chunk(chunk, self.mem.read(chunk, lay.chunk.data + 8
                                                             + fr.code + 8), code)
        frame = _U64.unpack(self.mem.read(tstate + lay.thread.frame, 8))[0]
        low = min(fr.code, fr.previous)
        for _ in range(MAX_FRAMES):
            fields = self.mem.read(frame + low, max(fr.code, fr.previous) + 8 - low)
            back = _U64.unpack_from(fields, fr.previous - low)[0]
            if not back:
                return frame if _U64.unpack_from(fields, fr.code - low)[0] == code else 0
            frame = back
        return 0

    def _first_in_chunk(self, chunk: int, data: bytes, code: int) -> int:
        """The address of the first frame in a thread's root chunk, whose copy from its start
        is ``data``, when it runs ``code``, else 0."""
        lay = self.layout
        assert lay.chunk is not None
        # the root chunk's first slot is left empty (push_chunk, Python/pystate.c 3.11+)
        first = lay.chunk.data
        for at in (first + 8, first):
            if at + lay.frame.code + 8 <= len(data) and _U64.unpack_from(
                    data, at + lay.frame.code)[0] & ~lay.executable_tag_mask == code:
                return chunk + at
        return 0

    def _interpreters(self) -> List[int]:
        """Every interpreter's address, read again after ``_INTERPS_TTL`` seconds."""
        now = time.monotonic()
        if now - self._interps_read >= _INTERPS_TTL:
            self._interps = interpreter_list(self.mem, self.layout, self.runtime)
            self._interps_read = now
        return self._interps

    def find_threading(self) -> None:
        """Find ``threading._active`` in every interpreter now (a millisecond or more: every
        ``sys.modules`` key is decoded), so that the first rounds' lookups are cheap."""
        try:
            for interp in self._interpreters():
                self.reader.active(interp)
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
