"""Interpreters -> thread states -> frames, read from a running target without stopping it.

One ``sample()`` costs a handful of reads per thread:

* ``_PyRuntime``: one read of the block holding ``interpreters.head`` (and, up to 3.11, the
  GIL's ``last_holder`` / ``locked`` / ``switch_number``);
* per interpreter: one read of ``next`` + ``tstate_head`` (+ the embedded ``_gil`` on 3.12+,
  and ``gc.collecting`` on 3.9+, in 3.8 in the runtime's block);
* per thread state: one read of the whole ``PyThreadState``, on 3.11/3.12 with the slots of
  the ``_PyCFrame``s it was last found in copied before and after it, and again after its
  frame chunk, in the same system call (see ``_copy_thread`` and ``_cframe_top``); on <=3.10
  a 4-byte read of the kernel TID inside glibc's ``struct pthread``;
* frames: see chunkwalk.py (3.11+: copies of the thread's datastack chunks) and pyframes.py
  (<=3.10: heap frame objects, last time's chain in one scatter read);
* code objects: nothing once verified (see codeobjects.py);
* nothing beyond the thread state for a thread whose frames cannot have changed since the last
  sample: one that has not run since (the caller knows, from /proc) or, with the GIL in other
  hands all along, has not held it (see ``sample()``).

Costs measured on this machine are in docs/benchmarks.md ("Cost of one sample").

Race tolerance: the target keeps running, so any pointer may be stale.  A thread whose walk
hits an unreadable address, a wrong ``ob_type``, a self-link or more than ``MAX_DEPTH`` frames,
or one of the tears particular to its frame walk, is walked again at once, up to
``WALK_ATTEMPTS`` walks in all (see ``_walk_again``); if the last one tears too, it is returned
with ``torn=True`` and the frames read so far, and counted in ``torn_reads``.  A chain that
ends at a generator's frame lost its callers when the generator yielded during the walk: they
come back from an earlier walk when its consumer still runs (spyrec.generatorcallers), or the
walk is torn.  A broken thread list drops the rest of that interpreter's threads.
``sample()`` raises only when ``_PyRuntime`` itself cannot be read; the caller
(PythonProcess) then tells a vanished process (TargetNotFound) from a torn read.
"""

import struct
from time import monotonic, monotonic_ns
from typing import (AbstractSet, Any, Callable, Collection, Dict, Iterable, List,
                    Optional, Sequence, Set, Tuple, Union)

from spyrec.chunkwalk import ChunkMemo, ChunkWalk, chunk_in_use
from spyrec.codeobjects import GONE, SKIP, CodeCache
from spyrec.errors import MemoryReadError
from spyrec.generatorcallers import GeneratorCallers
from spyrec.layouts.base import Layout
from spyrec.process import MemoryReader
from spyrec.pyframes import FrameChain, PyFrameWalk
from spyrec.stackcapture import Capture, CaptureDecoder, SharedState, completed
from spyrec.structs import FieldStruct
from spyrec.taskwalk import TaskWalk
from spyrec.walkcommon import (MAX_DEPTH, MAX_INTERPRETERS, MAX_THREADS, READ_ERRORS, U64, Copies,
                                ThreadStack, copies_by_address, interpreter_list)

#: The largest thread id Linux hands out (PID_MAX_LIMIT on 64-bit, include/linux/threads.h).
MAX_TID = 1 << 22
#: Walks of one thread in one sample while they keep tearing (see StackWalker._walk_again).
WALK_ATTEMPTS = 5
#: Times one sample follows an interpreter's thread list again from its head after a thread
#: state in it was freed under the walk (see StackWalker._sample_interpreter).
LIST_RESTARTS = 2
#: Bytes of a thread's frame chunk copied past the top its torn walk found, when it is copied
#: with the thread state (``_walk_again``): room for the frames pushed since.
CHUNK_SLACK = 2048
#: 3.11/3.12: C frames per thread whose pointer to the innermost frame is copied with the
#: thread state, latest first: one per run of the eval loop a thread goes in and out of (a
#: generator resumed from C, a callback; every call under ``-X perf``).
MAX_CFRAMES = 8
#: Those slots are copied in one range when they lie this close together (nested runs of the
#: eval loop put their C frames a few hundred bytes apart on the thread's stack): a read costs
#: about as much for a few KiB as for 8 bytes, and each read a walk makes widens the time its
#: copies span (see _copy_thread).
SLOT_COVER_BYTES = 8192

#: The key of a C frame slot's copy taken before the thread state's, beside the slot's address.
BEFORE = "before"
#: The key of a C frame slot's copy taken after the frame chunk, beside the slot's address.
LATE = "late"
#: The key of the thread state's bytes from its C frame pointer to its datastack top, as
#: copied right after its frame chunk.
LATE_STATE = "late state"
#: A pointer this close to a C frame's address is to its run's entry frame, beside it on the
#: C stack (both are locals of _PyEval_EvalFrameDefault, Python/ceval.c 3.12); no other frame
#: lies on a C stack.
ENTRY_NEAR = 4096
#: While code objects are replaced, copies are walked from outside where more than this share
#: of them lately ran a code object gone by the round (see StackWalker.copies_named): the
#: share of samples with a frame no name can be given (a linter loading its checkers now and
#: then stays well under; a program importing module after module goes well over).
MAX_COPY_MISSES = 0.15
#: The weight of each copy in that share (its mean runs over about fifty copies: one miss
#: alone does not reach ``MAX_COPY_MISSES``).
COPY_MISS_WEIGHT = 0.02

_U32 = struct.Struct("<I")


#: A thread state's fields as ``StackWalker._ts`` unpacks them (next, interp, frame, thread id,
#: and on 3.11+ native id, datastack chunk and top, base frame).
Fields = Tuple[Any, ...]
#: ``StackWalker._last`` entry: (fields but ``next``, stack, whether it holds from the GIL read
#: on, the thread state's bytes).
LastEntry = Tuple[Fields, ThreadStack, bool, bytes]
#: {slot: its copy after the thread state, (slot, BEFORE): its copy before, (slot, LATE): its
#: copy after the frame chunk, LATE_STATE: the thread state's C frame pointer and datastack
#: top copied with that} (see _slot_copies).
SlotCopies = Dict[Union[int, Tuple[int, str], str], bytes]


def _slot_copies(slots: List[Tuple[int, int]], copies: List[Optional[bytes]],
                 late: Sequence[Optional[bytes]] = ()) -> SlotCopies:
    """{slot: its copy after the thread state, (slot, BEFORE): its copy before} from the copies
    of ``slots`` in reverse, the thread state, ``slots`` (see StackWalker._copy_thread).

    ``late``: copies of ``slots`` and of the thread state's C frame pointer and datastack top
    made after the frame chunk; when all were made, each slot's goes under (slot, LATE) and the
    thread state's under LATE_STATE."""
    count = len(slots)
    found: SlotCopies = {}
    for (slot, _), before, after in zip(slots, reversed(copies[:count]), copies[count + 1:]):
        if after is not None:
            found[slot] = after
            if before is not None:
                found[slot, BEFORE] = before
    if late and None not in late:
        found[LATE_STATE] = late[-1]  # type: ignore[assignment]  # (none is None)
        for (slot, _), copy in zip(slots, late):
            found[slot, LATE] = copy  # type: ignore[assignment]
    return found


def _cover(slots: List[Tuple[int, int]]) -> Optional[Tuple[int, int]]:
    """One range holding every one of ``slots`` (address, size), when there are several and
    they lie within ``SLOT_COVER_BYTES``; else None."""
    if len(slots) < 2:
        return None
    start = min(addr for addr, _ in slots)
    end = max(addr + size for addr, size in slots)
    return (start, end - start) if end - start <= SLOT_COVER_BYTES else None


def _cut(copy: Optional[bytes], cover: Optional[Tuple[int, int]],
         slots: Sequence[Tuple[int, int]]) -> List[Optional[bytes]]:
    """Each of ``slots``' bytes out of ``copy``, the copy of range ``cover`` (None for all when
    it could not be read)."""
    if copy is None or cover is None:
        return [None] * len(slots)
    start = cover[0]
    return [copy[addr - start:addr - start + size] for addr, size in slots]


def _outside_range(pool: Dict[int, int], start: int, end: int) -> Dict[int, int]:
    """``pool`` without the frames in [start, end), removed from it too.

    A frame above a chunk's used part, or in a chunk newer than the copy a walk had, is read
    apart and goes to the pool; once the chunk's copy covers it, copying it again would only
    add a range to every walk's read (the walk takes it from the chunk's copy).
    """
    inside = [addr for addr in pool if start <= addr < end]
    for addr in inside:
        del pool[addr]
    return pool


def kept_runs(keys: Sequence[Optional[int]], runs: Sequence[Tuple[int, int]]
              ) -> List[Tuple[int, int]]:
    """``runs`` ((frames, entry frame) per run of the eval loop) counting only the frames
    kept: not the interpreter's own (``SKIP``)."""
    kept, at = [], 0
    for count, entry in runs:
        kept.append((sum(1 for key in keys[at:at + count] if key != SKIP), entry))
        at += count
    return kept


def _tstates_by_tid(order: List[int], stacks: List[ThreadStack]) -> Dict[int, int]:
    """{native TID: thread state} from the list order and the stacks sampled along it (a
    state without frames gives way to one with frames for the same thread)."""
    found: Dict[int, int] = {}
    for tstate, stack in zip(order, stacks):
        tid = stack.native_tid
        if tid and (stack.frames or tid not in found):
            found[tid] = tstate
    return found


def _block(fields: List[Tuple[int, str]]) -> Tuple[int, FieldStruct]:
    """A FieldStruct for fields of one struct, relative to the lowest offset (read from there)."""
    base = min(offset for offset, _ in fields)
    return base, FieldStruct([(offset - base, code) for offset, code in fields])


class StackWalker(ChunkWalk, PyFrameWalk, TaskWalk):
    """Samples every thread of every interpreter of one process.  The frames of a thread are
    walked by ``ChunkWalk`` (3.11+) or ``PyFrameWalk`` (<=3.10)."""

    def __init__(self, mem: MemoryReader, layout: Layout, runtime: int, codes: CodeCache,
                 frame_type: Optional[int] = None, pthread_tid_offset: Optional[int] = None,
                 host_tid: Optional[Callable[[int], int]] = None):
        self.mem = mem
        self.read = getattr(mem, "read_small", mem.read)  # pread: cheapest for small blocks
        self.layout = layout
        self.runtime = runtime
        self.codes = codes
        self.frame_type = frame_type if layout.frame_has_ob_type else None
        self.pthread_tid_offset = pthread_tid_offset
        self.host_tid = host_tid
        self.torn_reads = 0
        #: The last ``sample()`` stopped short of the end of a thread list (a state freed
        #: under the walk): the threads after it are missing from the round.
        self.list_cut = False

        self._init_reads(layout)
        # interp -> interp->ceval.gil, refreshed with the code cache
        self._gil_pointers: Dict[int, int] = {}
        # <=3.10: tstate -> the FrameChain of its last walk; 3.11+: tstate -> its ChunkMemo.
        self._chains: Dict[int, FrameChain] = {}
        #: tstate -> the addresses of the frames its last copy too deep to hold left out
        #: (see stackcapture.completed)
        self._outer: Dict[int, List[int]] = {}
        self._next_chains: Dict[int, FrameChain] = {}
        self._memos: Dict[int, ChunkMemo] = {}
        self._next_memos: Dict[int, ChunkMemo] = {}
        #: tstate -> (its fields but ``next``, its stack, whether the stack is known to hold
        #: from this sample's GIL read on, the bytes of the thread state those fields were
        #: read from), for threads that did not run since.
        self._last: Dict[int, LastEntry] = {}
        self._next_last: Dict[int, LastEntry] = {}
        #: interp -> (GIL last_holder, switch_number) as the last sample read them.
        self._gil_seen: Dict[int, Tuple[int, int]] = {}
        self._next_gil_seen: Dict[int, Tuple[int, int]] = {}
        #: interp -> its thread states in list order, as the last sample followed them.
        self._orders: Dict[int, List[int]] = {}
        self._next_orders: Dict[int, List[int]] = {}
        #: native TID -> its thread state, as the last sample() found them (one interpreter
        #: only; see sample_some).
        self._tstates: Optional[Dict[int, int]] = None
        #: Stacks kept whole from the last sample instead of walked (a bench figure).
        self.kept_stacks = 0
        self.capture_ns = 0  # when the stack _walk_thread gave was copied, if at an interrupt
        #: Walks done again because the one before tore (a benchmark figure).
        self.retried_walks = 0
        #: 3.11+: frames taken from a ChunkMemo instead of being parsed, and walks whose
        #: innermost frame did not fit the thread state's chunk top (benchmark figures).
        self.reused_frames = 0
        #: code objects are being made where others were (see CodeCache.replacing): as found
        #: at the start of the sample
        self.replacing = False
        #: While it is so, the share of the copies lately (an exponential mean, over about
        #: ``1 / COPY_MISS_WEIGHT`` of them) that ran a code object gone by their walk (see
        #: ``_keys_as_copied``).
        self.copy_misses = 0.0
        self._verified_early = 0  # the code verified as this walk began (_verify_innermost)
        self.misfit_walks = 0
        #: The callers of the threads' generator frames (see spyrec.generatorcallers).
        self.callers = GeneratorCallers(self.codes.is_generator)
        #: 3.11/3.12: tstate -> the C frames its walks last found it in, outside the thread
        #: state, latest first, at most MAX_CFRAMES (copied with it next time).
        self._cframes: Dict[int, List[int]] = {}
        #: 3.11+: tstate -> {address: the thread's walk that last met it}, the frames outside
        #: the chunk its recent walks read, least recently met first, at most MAX_PREFETCHED:
        #: what its walks copy with the thread state (see ChunkWalk._remember_outside).
        self._pools: Dict[int, Dict[int, int]] = {}
        #: 3.11+: tstate -> walks of the thread that kept its pool up to date
        self._pool_walks: Dict[int, int] = {}
        #: 3.11+: tstate -> the native TID of the thread its C frames and pool are of
        self._owners: Dict[int, int] = {}
        #: tstate -> its stack as copied at an interrupt since the last sample, for the
        #: threads running now (see spyrec.stackcapture); taken instead of a walk.
        self.captured: Dict[int, Capture] = {}
        #: Such copies walked from outside all the same, while code objects are replaced
        #: (see ``copies_named``).
        self.probed: Dict[int, Capture] = {}
        self.decoder: Optional[CaptureDecoder] = None
        #: Stacks taken from such copies (a benchmark figure).
        self.captured_stacks = 0
        #: Whether a copied stack says which frames each run of the eval loop ran
        #: (``ThreadStack.runs``, for native frames).
        self.with_runs = False
        #: Called with (thread state, stack) right after a thread's walk, for what must be
        #: read of the thread while it is as walked (see PythonProcess.with_thread_name).
        self.after_walk: Optional[Callable[[int, ThreadStack], ThreadStack]] = None
        #: The address of the outermost frame the last walk read (<=3.10; 0: not known) and
        #: its copy of the thread's root datastack chunk (3.11+, (address, end, bytes); None:
        #: not copied): where that thread's first frame is, as walked.
        self.first_frame = 0
        self.root_chunk: Optional[Tuple[int, int, bytes]] = None

        if self._iframe:
            self._init_chunk_walk(layout, codes)
        else:
            self._init_pyframe_walk(layout)
        self._frame_size = self._frame.size

    def _init_reads(self, layout: Layout) -> None:
        """The structs of the runtime, interpreter, GIL and thread state reads."""
        rt, it, ts = layout.runtime, layout.interp, layout.thread
        gil = layout.gil
        runtime_fields = [(rt.interpreters_head, "Q")]
        if layout.gil_kind == "runtime":
            assert rt.gil is not None  # the GIL embedded in _PyRuntime
            runtime_fields += [(rt.gil + gil.last_holder, "Q"), (rt.gil + gil.locked, "i"),
                               (rt.gil + gil.switch_number, "Q")]
        self._rt_gil = layout.gil_kind == "runtime"
        # gc.collecting: 3.8 in the runtime, 3.9+ in each interpreter; last in its block's values
        self._rt_gc = rt.gc_collecting is not None
        if rt.gc_collecting is not None:
            runtime_fields.append((rt.gc_collecting, "i"))
        #: where gc.collecting lies: (relative to the interpreter, or to _PyRuntime) or None
        self._collecting_at: Optional[Tuple[bool, int]] = (
            (True, it.gc_collecting) if it.gc_collecting is not None
            else (False, rt.gc_collecting) if rt.gc_collecting is not None else None)
        self._rt_base, self._rt = _block(runtime_fields)
        self._runtime_collecting = False

        interp_fields = [(it.next, "Q"), (it.tstate_head, "Q")]
        if layout.gil_kind == "interp":
            assert it.gil is not None  # the interpreter's own GIL
            interp_fields += [(it.gil + gil.last_holder, "Q"), (it.gil + gil.locked, "i"),
                              (it.gil + gil.switch_number, "Q")]
        self._in_gc: Optional[int] = None
        if it.gc_collecting is not None:
            self._in_gc = len(interp_fields)
            interp_fields.append((it.gc_collecting, "i"))
        self._in_base, self._in = _block(interp_fields)
        self._gil_struct = FieldStruct([(gil.last_holder, "Q"), (gil.locked, "i"),
                                        (gil.switch_number, "Q")])
        thread_fields = [(ts.next, "Q"), (ts.interp, "Q"), (ts.frame, "Q"), (ts.thread_id, "Q")]
        self._iframe = layout.frame_kind == "iframe"
        if self._iframe:
            # every "iframe" layout has them
            assert ts.native_thread_id is not None and ts.datastack_chunk is not None \
                and ts.datastack_top is not None
            thread_fields += [(ts.native_thread_id, "q"), (ts.datastack_chunk, "Q"),
                              (ts.datastack_top, "Q")]
            if ts.base_frame is not None:
                thread_fields.append((ts.base_frame, "Q"))
        elif ts.unique_id is not None:
            # (in the fields a kept stack is matched on: see ThreadOffsets.unique_id)
            thread_fields.append((ts.unique_id, "Q"))
        self._ts = FieldStruct(thread_fields)
        self._next_at = ts.next
        self._ts_size = max(ts.size, self._ts.size)
        self._init_task_walk(layout)
        self._cframe = layout.thread_frame_kind == "cframe"
        self._cframe_current = layout.cframe.current_frame if layout.cframe else 0
        #: 3.11/3.12: the thread state's bytes from its C frame pointer to its datastack top,
        #: copied again after the frame chunk (see _copy_thread): (offset, size).
        self._late_state = (ts.frame, (ts.datastack_top or 0) + 8 - ts.frame)

    def shared_state(self) -> SharedState:
        """Where the main interpreter's collector flag and GIL fields are, for copies made
        with its threads' stacks (see spyrec.stackcapture)."""
        gil = self.layout.gil
        interp = self.main_interpreter()
        collecting = 0
        if self._collecting_at is not None:
            in_interp, offset = self._collecting_at
            collecting = (interp if in_interp else self.runtime) + offset
        base = self._gil_at(interp)
        if not base:
            return SharedState(collecting)
        return SharedState(collecting, base + gil.last_holder, base + gil.locked)

    def main_interpreter(self) -> int:
        """The main interpreter state's address (0: none yet); raises what a read raises."""
        interps = interpreter_list(self.mem, self.layout, self.runtime)
        return interps[-1] if interps else 0

    @property
    def several_interpreters(self) -> bool:
        """Whether the last ``sample()`` walked more than one interpreter (a thread may then
        have a state in each: see spyrec.threads.one_stack_per_thread)."""
        return len(self._orders) > 1

    @property
    def tstates(self) -> Optional[Dict[int, int]]:
        """{native TID: thread state} of the main interpreter's threads as the last
        ``sample()`` found them, leaving out a thread that has a state in another interpreter
        too (its frames there are not the main interpreter's to copy, nor its GIL)."""
        return self._tstates

    # -- threads ---------------------------------------------------------------------------

    def sample(self, still: AbstractSet[int] = frozenset()) -> List[ThreadStack]:
        """Every thread state's stack.  Raises MemoryReadError only if _PyRuntime is unreadable.

        A thread's stack is taken from the last sample instead of being walked again, when its
        thread state reads as it did then and either

        * its native TID is in ``still``: threads known not to have run since before the last
          ``sample()`` (see ``ThreadStats.refresh``); or
        * no thread but the GIL's last holder took the GIL since the last sample read it (its
          ``last_holder`` and ``switch_number`` are unchanged: ``take_gil`` counts every change
          of holder), and this thread is not that holder.  Only a thread holding the GIL runs
          Python code, so no other thread's frames can have changed.  This needs a stack known
          to hold from the last GIL read on (walked after it, or kept by this same rule); one
          kept for a still thread is only known to hold from its /proc reads, before it.
        """
        self._tick()
        self._next_chains = {}
        self._next_memos = {}
        self._next_last = {}
        self._next_gil_seen = {}
        self._next_orders = {}
        self._tstates = None
        self.list_cut = False
        try:
            interp, runtime_gil = self._runtime_state()
            stacks: List[ThreadStack] = []
            seen_interps = 0
            while interp and seen_interps < MAX_INTERPRETERS:
                seen_interps += 1
                try:
                    interp = self._sample_interpreter(interp, runtime_gil, stacks, still)
                except READ_ERRORS:
                    self.torn_reads += 1
                    self.list_cut = True
                    break
        finally:
            # Even a failed walk replaces the last one: a thread's kept stack must come from
            # the walk that followed its state read, never from an older one.
            self._chains = self._next_chains
            self._memos = self._next_memos
            self._last = self._next_last
            self._gil_seen = self._next_gil_seen
            self._orders = self._next_orders
        if self._orders and not self.list_cut:
            # (a cut list may give a thread's TID to a state made for a new thread: see
            # ``spyrec.threads.bound_states``)
            main = list(self._orders.values())[-1]  # (walked last: see main_interpreter)
            self._tstates = _tstates_by_tid(main, stacks[len(stacks) - len(main):])
            if seen_interps > 1:
                elsewhere = {stack.native_tid for stack in stacks[:len(stacks) - len(main)]}
                for tid in elsewhere & self._tstates.keys():
                    del self._tstates[tid]
        return stacks

    def _sample_interpreter(self, interp: int, runtime_gil: Optional[Fields],
                            stacks: List[ThreadStack], still: AbstractSet[int]) -> int:
        """Append the stacks of one interpreter's threads; return the next interpreter.

        A thread that ends while the list is followed frees its state, and the state's link
        to the next one with it.  Stopping there would leave out every thread after it, the
        oldest (the list is newest first: the main thread last), in a server that starts a
        thread per request a few percent of their samples, and end them for the sampler; so
        the list is followed again from its head, the threads sampled already passed over.
        """
        values = self._in.unpack_from(self.read(interp + self._in_base, self._in.size))
        next_interp, tstate = values[0], values[1]
        last_holder, holder, gil_quiet = self._gil_state(interp, values, runtime_gil)
        collector = self._collector(values, last_holder)
        collector_at = -1
        visited: Set[int] = set()
        sampled: Set[int] = set()
        restarts = LIST_RESTARTS
        order = self._next_orders[interp] = []
        states = self._state_copies(interp, holder)
        # the loop runs once per thread (a thousand, in a server): what it uses, in locals
        unpack_state, last_of, kept_stack = self._ts.unpack_from, self._last.get, self._kept_stack
        unpack_next, next_at = U64.unpack_from, self._next_at
        while tstate:
            if tstate in visited or len(visited) >= MAX_THREADS or tstate & 7:
                self.torn_reads += 1
                self.list_cut = True
                break
            visited.add(tstate)
            if tstate in sampled:  # followed again: only its link is wanted
                tstate = unpack_next(self.read(tstate + next_at, 8))[0]
                continue
            sampled.add(tstate)
            order.append(tstate)
            if tstate == collector:
                collector_at = len(stacks)
            ts = states.get(tstate)
            if ts is not None:
                last = last_of(tstate)
                if last is not None and last[3] != ts:  # some byte changed: did the fields?
                    state = unpack_state(ts)[1:]
                    last = (state, last[1], last[2], ts) if last[0] == state else None
                # (the same bytes as last time are the same fields: unpacked once for all)
                if last is not None and last[0][0] == interp:
                    by_gil = gil_quiet and last[2] and tstate != last_holder
                    if by_gil or last[1].native_tid in still:
                        stacks.append(kept_stack(tstate, last, tstate == holder, by_gil))
                        tstate = unpack_next(ts, next_at)[0]
                        continue
            stack, next_tstate = self._read_and_walk(tstate, interp, holder, last_holder,
                                                     gil_quiet, still)
            if stack is None:
                order.pop()  # ``order`` pairs with ``stacks`` (see _tstates_by_tid)
                if not restarts:
                    self.list_cut = True
                    break
                restarts -= 1
                visited = set()
                tstate = self._in.unpack_from(
                    self.read(interp + self._in_base, self._in.size))[1]
                continue
            stacks.append(stack)
            tstate = next_tstate
        if 0 <= collector_at < len(stacks) and not stacks[collector_at].copied \
                and self._still_collecting(interp, collector):
            stacks[collector_at] = stacks[collector_at]._replace(in_gc=True)
        return next_interp

    def _collector(self, values: Fields, last_holder: int) -> int:
        """The thread state running the interpreter's garbage collector, or 0: the collection
        runs in the thread holding the GIL and keeps it (Modules/gcmodule.c, 3.8-3.12;
        Python/gc.c, 3.13+), but while Python code it runs (a finalizer, a ``gc.callbacks``
        function) lets another thread take it.  ``values``: the interpreter's fields now."""
        collecting = values[self._in_gc] if self._in_gc is not None else self._runtime_collecting
        return last_holder if collecting else 0

    def _still_collecting(self, interp: int, collector: int) -> bool:
        """Whether the collection found before the collector's stack was read still runs, in
        ``collector``: a stack read after it ended (or between two) is not marked.  A
        collection is milliseconds long, a walk microseconds: one found at both ends held
        throughout, and the GIL's holder read between the two is the thread running it (the
        collector keeps the GIL).  The holder read before the first is not: a thread that
        let the GIL go just then, another taking it to collect, was found collecting."""
        if self._collecting_at is None:
            return False
        in_interp, offset = self._collecting_at
        holder_at = self._last_holder_at(interp)
        if holder_at is None:
            return False
        # (one system call, its ranges read in order: the holder, then the flag)
        holder, flag = self.mem.read_many(
            [(holder_at, 8), ((interp if in_interp else self.runtime) + offset, 4)])
        if holder is None or flag is None:
            return False
        return _U32.unpack(flag)[0] != 0 and U64.unpack(holder)[0] == collector

    def _last_holder_at(self, interp: int) -> Optional[int]:
        """Where the GIL this interpreter uses keeps its last holder; None where unknown."""
        try:
            base = self._gil_at(interp)
        except READ_ERRORS:
            return None
        return base + self.layout.gil.last_holder if base else None

    def _gil_at(self, interp: int) -> int:
        """Where the GIL this interpreter uses lies: in the runtime (<=3.11), or where its
        ``ceval.gil`` points (3.12+; 0 before it has one).  Raises what a read raises."""
        if self._rt_gil:
            return self.runtime + self.layout.runtime.gil  # type: ignore[operator]  # (set where _rt_gil)
        return self._gil_pointer(interp)

    def _tick(self) -> None:
        """A sample begins: its time, and the code cache's periodic check."""
        now = self.callers.now = monotonic()
        if self.codes.expire(now):
            self._gil_pointers.clear()  # re-read interp->ceval.gil once per period too
        self.replacing = self.codes.replacing(now)

    def _runtime_state(self) -> Tuple[int, Optional[Fields]]:
        """(the first interpreter, the runtime's GIL fields or None where each interpreter
        has its own), read now from _PyRuntime."""
        values = self._rt.unpack_from(self.read(self.runtime + self._rt_base, self._rt.size))
        if self._rt_gc:
            self._runtime_collecting = bool(values[-1])
        return values[0], (values[1:4] if self._rt_gil else None)

    def _gil_state(self, interp: int, values: Fields,
                   runtime_gil: Optional[Fields]) -> Tuple[int, int, bool]:
        """(last holder, holder or 0, quiet) of the GIL an interpreter uses, ``values`` its
        fields as read now; quiet: no other thread took it since the last sample read it (see
        sample()).  A GIL not created yet (locked -1) or never held tells nothing."""
        if runtime_gil is not None:
            last_holder, locked, switches = runtime_gil
        else:
            last_holder, locked, switches = self._interp_gil(interp, values)
        seen = (last_holder, switches)
        gil_quiet = (locked in (0, 1) and last_holder != 0
                     and self._gil_seen.get(interp) == seen)
        self._next_gil_seen[interp] = seen
        return last_holder, (last_holder if locked == 1 else 0), gil_quiet

    def sample_some(self, tids: Collection[int],
                    still: AbstractSet[int] = frozenset()) -> Optional[List[ThreadStack]]:
        """The stacks of the threads ``tids`` alone, every other thread's last stack standing;
        None when that cannot be done here, and ``sample()`` is the way.

        For a process with many idle threads.  The caller vouches that no thread but these
        has run since the last sample (see ``spyrec.dormancy``): no other thread's state or
        frames can have changed, and no thread state was made or removed but by these (a
        state is made by a running thread, at the head of the list, and removed by the thread
        that ends).  So the list is not followed: one interpreter only, its list starting where
        the last sample found it, and each of ``tids`` at the thread state where it was.
        """
        orders = self._orders
        if len(orders) != 1 or self._tstates is None:
            return None
        (interp, order), = orders.items()
        wanted = [self._tstates.get(tid) for tid in tids]
        if not order or None in wanted:
            return None
        try:
            first_interp, runtime_gil = self._runtime_state()
            in_values = self._in.unpack_from(self.read(interp + self._in_base, self._in.size))
        except READ_ERRORS:
            return None
        if first_interp != interp or in_values[0] or in_values[1] != order[0]:
            return None  # another interpreter, or a thread state made at the head
        return self._walk_some(interp, in_values, runtime_gil,
                               wanted, still, whole=True)  # type: ignore[arg-type]  # (no None)

    def walk_copied(self, tids: Collection[int]) -> List[ThreadStack]:
        """The stacks of the threads ``tids``, walked again in the round that ``sample()`` just
        read, from the copies in ``captured``; those that cannot be are left out.  Unlike
        ``sample_some``, threads made or ended since do not matter: each stack replaces only
        its own thread's in this round, and its copy was made by the thread itself, so its
        state is the thread's."""
        orders = self._orders
        if len(orders) != 1 or self._tstates is None:
            return []
        (interp, _), = orders.items()
        wanted = [tstate for tstate in (self._tstates.get(tid) for tid in tids) if tstate]
        if not wanted:
            return []
        try:
            _, runtime_gil = self._runtime_state()
            in_values = self._in.unpack_from(self.read(interp + self._in_base, self._in.size))
        except READ_ERRORS:
            return []
        return self._walk_some(interp, in_values, runtime_gil, wanted, frozenset(),
                               whole=False) or []

    def _walk_some(self, interp: int, in_values: Fields, runtime_gil: Optional[Fields],
                   wanted: List[int],
                   still: AbstractSet[int], whole: bool) -> Optional[List[ThreadStack]]:
        """The stacks of the thread states ``wanted`` of ``interp``, their entries in the last
        sample's tables replaced; a state that cannot be read is None for all (``whole``) or
        left out."""
        self._tick()
        # What these threads' walks keep goes into fresh tables, then replaces their entries
        # in the last sample's (the other threads' entries stand, not copied).
        self._next_last, self._next_memos, self._next_chains = {}, {}, {}
        self._next_gil_seen = dict(self._gil_seen)
        self._next_orders = self._orders
        stacks: List[ThreadStack] = []
        try:
            last_holder, holder, gil_quiet = self._gil_state(interp, in_values, runtime_gil)
            collector = self._collector(in_values, last_holder)
            for tstate in wanted:
                stack = self._read_and_walk(tstate, interp, holder, last_holder, gil_quiet,
                                            still)[0]
                if stack is None:
                    if whole:
                        return None  # a thread ended: its state was freed
                    continue
                if tstate == collector and not stack.copied and self._still_collecting(interp,
                                                                                     collector):
                    stack = stack._replace(in_gc=True)
                stacks.append(stack)
        except READ_ERRORS:
            return None
        for kept, fresh in ((self._last, self._next_last), (self._memos, self._next_memos),
                            (self._chains, self._next_chains)):
            for tstate in wanted:
                kept.pop(tstate, None)
            kept.update(fresh)  # type: ignore[arg-type]  # (each pair holds one kind of value)
        self._gil_seen = self._next_gil_seen
        return stacks

    def _read_and_walk(self, tstate: int, interp: int, holder: int, last_holder: int,
                       gil_quiet: bool,
                       still: AbstractSet[int]) -> Tuple[Optional[ThreadStack], int]:
        """(stack, next thread state) of one thread state read now, its last stack kept when
        the rules of ``sample()`` allow, else walked (again while torn, up to
        ``WALK_ATTEMPTS``); (None, 0) when the state cannot be read or belongs to another
        interpreter: the list was changing under the walk."""
        prefetched = slot_copies = None
        if self._tasks_on:
            self._before_walk(tstate)
        read_ns = monotonic_ns()
        try:
            if self._cframe and not (self.captured and tstate in self.captured):
                memo = self._memos.get(tstate)
                ts, prefetched, slot_copies = self._copy_thread(
                    tstate, (memo.chunk, memo.chunk + len(memo.buf)) if memo else None)
                if ts is None:
                    raise MemoryReadError("thread state 0x%x unreadable" % tstate)
            else:
                ts = self.read(tstate, self._ts_size)
        except READ_ERRORS:
            self.torn_reads += 1  # freed while we followed the list: drop the rest
            return None, 0
        fields = self._ts.unpack_from(ts)
        if fields[1] != interp:
            self.torn_reads += 1
            return None, 0
        if self._iframe and self._owners.get(tstate) != fields[4]:
            self._new_owner(tstate, fields[4])
        state = fields[1:]
        last = self._last.get(tstate)
        if last is not None and last[0] == state:
            by_gil = gil_quiet and last[2] and tstate != last_holder
            if by_gil or last[1].native_tid in still:
                return (self._kept_stack(tstate, (state, last[1], last[2], ts), tstate == holder,
                                         by_gil), fields[0])
        stack = self._walk_thread(tstate, ts, fields, tstate == holder, prefetched, slot_copies)
        if self.capture_ns:
            read_ns = self.capture_ns  # copied at an interrupt, before this round's reads
        if self._tasks_on:
            stack = self._with_task(tstate, ts, stack)
            if stack.copied and self.task_missed:
                # A task that ran at the copy and is unknown (<=3.13 learn the tasks as they
                # run, and a short one may have ended by now): walked now instead, its task
                # read with it.
                read_ns = monotonic_ns()
                stack = self._with_task(tstate, ts, self._walk_thread(
                    tstate, ts, fields, tstate == holder, prefetched, slot_copies))
        attempts = WALK_ATTEMPTS - 1
        fullest, fullest_ns = stack, read_ns
        reread = stack.torn
        while stack.torn and attempts:
            attempts -= 1
            again_ns = monotonic_ns()
            retried = self._walk_again(tstate, interp, holder, fields)
            if retried is None:
                break
            ts, fields, stack = retried
            if self._tasks_on:
                stack = self._with_task(tstate, ts, stack)
            read_ns = again_ns
            state = fields[1:]
            if len(stack.frames) > len(fullest.frames):
                fullest, fullest_ns = stack, read_ns
        if stack.torn:
            # Every walk tore: a torn walk keeps the frames it read before the tear, so
            # the one that read most holds most of the thread's real stack.
            stack, read_ns = fullest, fullest_ns
            self.torn_reads += 1
        elif self.after_walk is not None:
            stack = self.after_walk(tstate, stack)
        if not stack.torn and stack.native_tid and not stack.copied:
            # (an unknown TID may be found later (<=3.10): walk again; and a copied stack is
            # older than the thread state read now: the thread may have moved on since, and
            # stopped there)
            self._next_last[tstate] = (state, stack, True, ts)
        # A walk done again is later than the round by the walks before it: stamped apart.
        return stack._replace(read_ns=read_ns, reread=reread and not stack.torn), fields[0]

    def _new_owner(self, tstate: int, native_tid: int) -> None:
        """Forget what the walks of another thread left under ``tstate``: a thread state freed
        is soon made again at the same address for a new thread (a server's next request),
        whose C frames and frames outside the chunk are elsewhere; the old ones would be
        copied with each of its walks, in vain."""
        if len(self._owners) >= MAX_THREADS:
            self._owners.clear()
        self._owners[tstate] = native_tid
        self._cframes.pop(tstate, None)
        self._pools.pop(tstate, None)
        self._pool_walks.pop(tstate, None)

    def _state_copies(self, interp: int, holder: int) -> Dict[int, bytes]:
        """{tstate: a copy of it} for the threads whose last stack may be kept this time, all
        copied in one batched read (empty when fewer than two).

        Following the list one read per thread state is where a round of many idle threads
        spent most of its time.  The thread states stay where they are from one sample to the
        next, so those of the last sample are copied at once, and the list is followed through
        the copies (``next`` as copied: one consistent picture of the list).
        Only the decision to keep a stack uses a copy; a thread that is walked is read again
        just before its walk, as always, since the copy is older by the walks done before it.
        """
        last = self._last
        wanted = [tstate for tstate in self._orders.get(interp, ()) if tstate in last
                  and tstate != holder]
        if len(wanted) < 2:
            return {}
        size = self._ts_size
        try:
            copies = self.mem.read_many([(tstate, size) for tstate in wanted])
        except READ_ERRORS:
            return {}  # each thread state is read on its own, as without the batch
        return {tstate: data for tstate, data in zip(wanted, copies) if data is not None}

    def _copy_thread(self, tstate: int, extent: Optional[Tuple[int, int]] = None
                     ) -> Tuple[Optional[bytes], Copies, Optional[SlotCopies]]:
        """(a copy of the thread state or None, {address: copy} of frames copied with it or
        None, its C frames' slot copies or None), from one batched read (``read_many``: one
        ``process_vm_readv``, or back-to-back preads where they cost less).

        A thread whose stack changes every microsecond (generators resumed and suspended,
        short calls) has moved on between separate reads: a chain assembled from them puts
        frames of different moments together.  So the thread state, its newest chunk as
        ``extent`` (start, top) last found it (with room to grow), and the frames outside the
        chunk that its recent walks read (generator and entry frames: its pool, see
        ``_remember_outside``) are copied in one batched read, one range right after another.

        3.11/3.12 copy the slots of the thread's recent C frames just before and after the
        thread state (see _cframe_top), the most recent C frame's nearest to it on both sides
        (all in one range where they lie close: ``SLOT_COVER_BYTES``), then the chunk, then the
        pool, latest frames first, then the slots again with the thread state's C frame pointer
        and datastack top.  Each range of a copy costs most of a
        microsecond here, so a walk from the slots copied with the thread state would put the
        thread in a frame it had left by the time the chunk was copied, or not yet entered;
        from the slots copied after the chunk, with the top copied then, it is of nearly the
        chunk's moment (3.12; 3.11 walks from the top copied with the thread state when the
        slots disagree with it, see _walk_chunks).  The pool comes right after the chunk: a
        generator resumed every few microseconds, copied later, is found in a call its
        consumer's copy has not made (four times as many stacks mixing moments in a loop of
        such calls).  Elsewhere the thread state comes last, callers before it (a stack changes
        at its inner end); a first walk there copies the thread state alone, the chunk and the
        pool after it (ChunkWalk._copy_with_pool), as measured best on 3.13-3.15.
        """
        chunk = []
        pool = self._pools.get(tstate, ())
        if extent is not None and chunk_in_use(*extent):
            chunk = [(extent[0], extent[1] - extent[0] + CHUNK_SLACK)]
            if pool:
                pool = _outside_range(pool, extent[0], extent[1] + CHUNK_SLACK)
        if not self._cframe:
            if extent is None:  # a first walk
                return self.read(tstate, self._ts_size), None, None
            ranges = chunk + [(addr, self.outside_span(addr)) for addr in pool]
            copies = self.mem.read_many(ranges + [(tstate, self._ts_size)])
            return copies[-1], copies_by_address(ranges, copies), None
        slots = [(cframe + self._cframe_current, 8) for cframe in self._cframes.get(tstate, ())]
        frames = [(addr, self.outside_span(addr)) for addr in reversed(pool)]
        if not slots and not chunk and not frames:
            return self.read(tstate, self._ts_size), None, None
        cover = _cover(slots)
        before, after = ([cover], [cover]) if cover else (slots[::-1], slots)
        late_state = [(tstate + self._late_state[0], self._late_state[1])]
        late = after + late_state if slots and chunk else []
        copies = self.mem.read_many(before + [(tstate, self._ts_size)] + after + chunk + frames
                                    + late)
        at_chunk = len(before) + 1 + len(after)
        at_late = len(copies) - len(late)
        ts = copies[len(before)]
        by_address = copies_by_address(chunk + frames, copies[at_chunk:at_late])
        if not slots:
            return ts, by_address, None

        def each_slot(part: List[Optional[bytes]], order: List[Tuple[int, int]]):
            """The copies of the slots (in ``order``) one read of ``part`` made."""
            return _cut(part[0], cover, order) if cover else part

        slot_copies = (each_slot(copies[:len(before)], slots[::-1]) + [ts]
                       + each_slot(copies[len(before) + 1:at_chunk], slots))
        late_copies = (each_slot(copies[at_late:-1], slots) + copies[-1:]) if late else []
        return ts, by_address, _slot_copies(slots, slot_copies, late_copies)

    def _walk_again(self, tstate: int, interp: int, holder: int,
                    torn_fields: Fields) -> Optional[Tuple[bytes, Fields, ThreadStack]]:
        """(ts, fields, stack) of one more walk of a thread whose last walk tore, or None.

        A walk tears when the thread returns and calls between the copy of its thread state
        and that of its frames: the frames it then pushed, of other sizes, cover the ones the
        thread state pointed to; or when a generator on its stack yields between the copies,
        which clears the generator's link to its caller.  The walk done again copies the frame
        chunk the torn walk found with the thread state (see _copy_thread); a stack that the
        generators keep rebuilding faster than that is completed instead (``_splice``).
        """
        self.retried_walks += 1
        extent = (torn_fields[5], torn_fields[6]) if self._iframe else None
        if self._cframe and not self._cframes.get(tstate):
            self._cframes[tstate] = [torn_fields[2]]
        try:
            ts, prefetched, slot_copies = self._copy_thread(tstate, extent)
            if ts is None:
                ts = self.read(tstate, self._ts_size)
        except READ_ERRORS:
            return None
        fields = self._ts.unpack_from(ts)
        if fields[1] != interp:
            return None
        return ts, fields, self._walk_thread(tstate, ts, fields, tstate == holder, prefetched,
                                             slot_copies)

    def _kept_stack(self, tstate: int, entry: LastEntry, holds_gil: bool,
                    by_gil: bool) -> ThreadStack:
        """The last sample's stack of a thread whose frames cannot have changed since
        (``entry``: its ``_last`` entry, with the thread state as read this time)."""
        self.kept_stacks += 1
        self._next_last[tstate] = entry if entry[2] == by_gil else entry[:2] + (by_gil, entry[3])
        last = entry[1]
        memo = self._memos.get(tstate)
        if memo is not None:
            self._next_memos[tstate] = memo
        chain = self._chains.get(tstate)
        if chain is not None:
            self._next_chains[tstate] = chain
        if last.holds_gil == holds_gil:  # a kept stack is never torn: the same one serves
            return last
        return ThreadStack(last.native_tid, last.python_thread_id, last.frames, holds_gil, False)

    def _interp_gil(self, interp: int, values: Fields) -> Tuple[int, int, int]:
        """(last_holder, locked, switch_number) of the GIL this interpreter uses (3.12+: via
        ceval.gil)."""
        it = self.layout.interp
        pointer = self._gil_pointer(interp)
        if pointer == interp + it.gil:  # type: ignore[operator]
            return values[2], values[3], values[4]
        if not pointer:
            return 0, 0, 0
        return self._gil_struct.unpack_from(self.read(pointer, self._gil_struct.size))

    def _gil_pointer(self, interp: int) -> int:
        """3.12+: where the GIL this interpreter uses lies (``ceval.gil``), read once a period
        (see ``_tick``); raises what a read raises."""
        pointer = self._gil_pointers.get(interp)
        # (ceval_gil is set in every layout whose gil_kind is "interp", the only one this is
        # called for)
        if pointer is None:
            pointer = U64.unpack(self.read(interp + self.layout.interp.ceval_gil, 8))[0]  # type: ignore[operator]
            self._gil_pointers[interp] = pointer
        return pointer

    def _walk_thread(self, tstate: int, ts: bytes, fields: Fields, holds_gil: bool,
                     prefetched: Copies = None,
                     slot_copies: Optional[SlotCopies] = None) -> ThreadStack:
        """The stack of one thread; ``prefetched``: {address: bytes} of frames copied with its
        state, ``slot_copies`` those of its C frames' slots (see _slot_copies)."""
        thread_id = fields[3]
        torn = False
        self._splices_before = self.callers.spliced_stacks  # (see _with_task)
        # set by the walk that reads a generator frame; a thread without frames has none
        self.outermost_generator = self.outermost_generator_code = 0
        self.first_frame, self.root_chunk = 0, None
        with_state = True  # the innermost frame's address was copied with the thread state
        native = fields[4] if self._iframe else 0
        codes: Sequence[int] = ()
        offsets: Sequence[int]
        self.capture_ns = 0
        self._verified_early = 0
        in_gc = False
        runs: Optional[List[Tuple[int, int]]] = None
        copied_keys: Optional[List[Optional[int]]] = None
        capture = self.captured.pop(tstate, None) if self.captured else None
        if capture is not None:
            native = native or self._pthread_tid(thread_id)
            owner = self.host_tid(native) if self.host_tid is not None and native else native
            if owner and owner != capture.tid:
                # The state is another thread's now: a thread's state freed as it ended is
                # soon made again at its address for the next one (3.8-3.11 give that one its
                # creator's ids until it runs), and the ended thread's copy is not of it.
                capture = None
        if capture is not None and self.decoder is not None:
            # (a stack deeper than the program copies: its outer frames, which hold still
            # while the ones copied run, read now)
            capture, outer = completed(self.mem, self.layout, capture, MAX_DEPTH,
                                       self._outer.get(tstate, ()))
            if outer:
                if len(self._outer) >= MAX_THREADS:
                    self._outer.clear()
                self._outer[tstate] = outer
            codes, offsets, torn, gens = self.decoder.decode(capture)
            if not torn and self.replacing and capture.identified:
                copied_keys = self._keys_as_copied(capture, codes)
                torn = copied_keys is None
            if torn:
                codes = ()
                torn = False
                capture = None  # walked from outside instead
            else:
                if self.with_runs:
                    runs = self.decoder.runs
                self.captured_stacks += 1
                self.capture_ns = capture.time_ns
                # as they stood at the copy: the collector runs in the GIL's holder
                holds_gil = capture.locked == 1 and capture.holder == tstate
                in_gc = bool(capture.collecting) and capture.holder == tstate
                self.outermost_generator, at = gens[-1] if gens else (0, -1)
                self.outermost_generator_code = codes[at] if gens else 0
        try:
            if codes:
                native = native or self._pthread_tid(thread_id)
            elif self._iframe:
                codes, offsets, torn, with_state = self._walk_chunks(tstate, ts, fields,
                                                                     prefetched, slot_copies)
            else:
                native = self._pthread_tid(thread_id)
                codes, offsets, torn = self._walk_pyframes(fields[2], tstate)
        except READ_ERRORS:  # a torn stack of a known thread: not one of an unknown thread 0
            codes, torn = (), True
        if not 0 <= native <= MAX_TID:  # not a thread id: unknown, like one not found yet
            native = 0
        if self.host_tid is not None and native:
            native = self.host_tid(native)
        if not codes:
            return ThreadStack(native, thread_id, (), holds_gil, torn)
        if copied_keys is not None:
            keys = copied_keys
        else:
            if self.replacing:
                # Any frame may run a code object made where another was verified (see
                # CodeCache.replacing), even one whose bytes are those of the last walk's
                # frame there: a module's body run from the same call as the last one, at the
                # same offset, its module's dict where the last one's was.
                early = self._verified_early
                self.codes.forget(code for code in codes if code != early)
            verified = self.codes.verified
            try:
                keys = list(map(verified.__getitem__, codes))
            except KeyError:
                keys = self.codes.keys_for(codes)
        if None in keys:  # not a code object: the walk is torn from there on
            cut = keys.index(None)
            keys, offsets, torn, runs = keys[:cut], offsets[:cut], True, None
        if keys and keys[0] == SKIP and not torn and not with_state:
            # An entry frame innermost, its owner overwritten: the C stack it lies on has been
            # reused since its run of the eval loop returned (see _walk_iframes).
            return ThreadStack(native, thread_id, (), holds_gil, True)
        frames: Iterable[Tuple[Optional[int], int]] = zip(keys, offsets)
        if SKIP in keys:  # interpreter-internal frames
            frames = [frame for frame in frames if frame[0] != SKIP]
            if runs is not None:
                runs = kept_runs(keys, runs)
        return ThreadStack(native, thread_id, tuple(frames), holds_gil, torn, in_gc=in_gc,
                           copied=capture is not None and not torn,
                           runs=tuple(runs) if runs is not None and not torn else (),
                           verified=self.replacing)

    def copies_named(self) -> bool:
        """Whether, while code objects are made where others were (see
        CodeCache.replacing), the stacks copied at interrupts are taken, each frame named
        after the code object it ran at the copy, by the identity each one had then (its
        version, 3.12+; its shape, <=3.11: see CodeCache.alike).

        A code object made and freed between the copy and the round (a short module body)
        cannot be named: its frame is written as the ``FREED_FRAME``, under its callers.
        Where that happens to more than ``MAX_COPY_MISSES`` of the copies lately (a program
        importing module after module), every copy is walked from outside, whatever it holds
        (``probed``, to see whether it is still so), each frame's code object verified as it
        is read, so that the bodies are named while they run."""
        return self.codes.identifies and self.copy_misses < MAX_COPY_MISSES

    def _keys_as_copied(self, capture: Capture, codes: Sequence[int]
                        ) -> Optional[List[Optional[int]]]:
        """The keys of a copy's frames named as the copy ran them (see ``copies_named``);
        None where one of them cannot be told from another made at its address."""
        cache, decoder = self.codes, self.decoder
        assert decoder is not None
        identities = capture.identities  # (not of outer frames read since: ``completed``)
        keys = cache.keys_as_copied(codes, [cache.identity_in(identities, at)
                                            if at < len(identities) else None
                                            for at in decoder.windows])
        missed = keys is None or GONE in keys
        self.copy_misses += COPY_MISS_WEIGHT * (missed - self.copy_misses)
        return keys

    def probe_copies(self) -> None:
        """Whether the copies walked from outside this round (``probed``) could have been
        named (see ``copies_named``): after the round's walks, which it would delay."""
        probed, self.probed = self.probed, {}
        decoder = self.decoder
        if decoder is None:
            return
        for capture in probed.values():
            codes, _, torn, _ = decoder.decode(capture)
            if not torn:
                self._keys_as_copied(capture, codes)

    def _walk_chunks(self, tstate: int, ts: bytes, fields: Fields, prefetched: Copies,
                     slot_copies: Optional[SlotCopies]
                     ) -> Tuple[Sequence[int], Sequence[int], bool, bool]:
        """3.11+: (codes, offsets, torn, whether the innermost frame's address was copied with
        the thread state) of one thread's frames."""
        torn = False
        with_state = True
        codes: Sequence[int]
        offsets: Sequence[int]
        codes = offsets = ()
        top, other, late = fields[2], 0, False
        # the datastack top that goes with the slot's copy taken (see _cframe_top)
        data_top = fields[6]
        # 3.12 walks first from the slot's copy made after the chunk (see _cframe_top), 3.11
        # from the one made with the thread state (see below)
        late_first = self._is_entry is None
        if self._cframe:
            try:
                top, with_state, other, late_top = self._cframe_top(tstate, ts, top,
                                                                    slot_copies, late_first)
                if late_top:
                    data_top, late = late_top, True
            except READ_ERRORS:
                top = 0  # the C frame is gone: see below
                torn = True
        sentinel = fields[7] if len(fields) > 7 else 0
        if top:
            codes, offsets, torn = self._walk_iframes(
                top, fields[5], data_top, sentinel, tstate, prefetched, with_state,
                with_state and not other)
        if torn and self._misfit and not late_first:
            # 3.11: the frame ending at the datastack top is the innermost one at the moment
            # the thread state was copied, unless a generator's own frame (outside the chunk)
            # ran above it.  The C frame's slot, copied a read or two apart, names a frame of
            # another moment when the thread goes in and out of a generator's run every few
            # microseconds, as often as not where one read costs a microsecond or two; taking
            # the slot's late copy then, a moment chosen by whether the first one fitted, put
            # the thread in a long C call more often than it was there (json_rows.py).
            last = self._last_in_chunk(fields[5], fields[6], prefetched, started=True)
            if last:
                codes, offsets, torn = self._walk_iframes(last, fields[5], fields[6], sentinel,
                                                          tstate, prefetched, with_state)
            # that frame gone from the chunk's copy (a short call returned, and another took
            # its place), the slot's late copy is of the chunk's moment
            late_copy = self._late_copy(fields[2], slot_copies) if torn and self._misfit \
                else None
            if late_copy is not None:
                top, data_top = late_copy
                late = True
        if torn and self._misfit and late:
            # The slot as copied after the chunk names the frame the thread was in then, as a
            # quick read of it (or a stopped thread) would: the top copied a moment apart may
            # hold a frame being pushed or popped, or the next descent.  Taking the slot's copy
            # made before the chunk instead put the thread in a long C call more often than it
            # was there (json_rows.py), the earlier moment falling there more often than not.
            codes, offsets, torn = self._walk_iframes(top, fields[5], data_top, sentinel,
                                                      tstate, prefetched, with_state, fit=False)
        if torn and self._misfit and other:
            # The other copy of the C frame's slot, taken on the other side of the
            # thread state, may be the one that agrees with it.
            codes, offsets, torn = self._walk_iframes(other, fields[5], fields[6],
                                                      sentinel, tstate, prefetched)
        if torn and not codes and self._cframe:
            # The C frame that named the innermost frame has ended and its stack slot
            # holds something else: the thread is in C code between two runs of the
            # eval loop, its innermost Python frame the last one on its chunk.  Kept
            # as torn: that frame may be one being pushed or popped.
            last = self._last_in_chunk(fields[5], fields[6], prefetched)
            if last:
                codes, offsets, _ = self._walk_iframes(last, fields[5], fields[6],
                                                       sentinel, tstate, prefetched)
        return codes, offsets, torn, with_state

    def _verify_innermost(self, code: int) -> None:
        """Verify the code object of a walk's innermost frame as soon as the walk has read it,
        when it is not verified yet (or may have been replaced: see CodeCache.replacing).  A
        code object that runs once (a module's body) is freed as soon as it returns: verified
        after the whole walk, one found in its last moments would be gone, the walk torn, and
        the thread walked again where it had gone since."""
        if self.replacing or code not in self.codes.verified:
            self.codes.forget((code,))
            self.codes.keys_for([code])
            self._verified_early = code

    def _late_copy(self, cframe: int, slot_copies: Optional[SlotCopies]
                   ) -> Optional[Tuple[int, int]]:
        """(the C frame's slot, the datastack top) as copied after the frame chunk, or None
        when they were not, or the thread state then named another C frame: a run of the eval
        loop that returned since (a generator resumed from C, on 3.11 every one) left its slot
        stale."""
        if not slot_copies:
            return None
        state = slot_copies.get(LATE_STATE)
        data = slot_copies.get((cframe + self._cframe_current, LATE))
        if state is None or data is None or U64.unpack_from(state)[0] != cframe:
            return None
        return U64.unpack(data)[0], U64.unpack_from(state, self._late_state[1] - 8)[0]

    def _cframe_top(self, tstate: int, ts: bytes, cframe: int,
                    slot_copies: Optional[SlotCopies] = None, late_first: bool = True
                    ) -> Tuple[int, bool, int, int]:
        """3.11/3.12: tstate->cframe->current_frame, whether it was copied with the thread
        state (from its root C frame inside it, or ``slot_copies``) or read after it, the
        slot's other copy when the two differ (else 0), and, when the one taken is the copy
        made after the frame chunk (only when ``late_first``), the datastack top copied with
        it (else 0).

        A walk from the slot as copied right after the chunk, with the top copied with it, is
        of one moment: the chunk's, to within the copy of the frames above the innermost.  A
        walk from the copy made with the thread state mixes two: a thread that returned from
        a short call and called another at the same address between the copies would be
        shown in the first or in the second as the frames' sizes happen to make its walk fit
        the thread state's top or not (see ChunkWalk._fits_top).
        """
        at = cframe - tstate + self._cframe_current
        if 0 <= at <= len(ts) - 8:
            self._cframes.pop(tstate, None)
            return U64.unpack_from(ts, at)[0], True, 0, 0
        known = self._cframes.get(tstate)
        if known is None:
            if len(self._cframes) >= MAX_THREADS:
                self._cframes.clear()
            self._cframes[tstate] = [cframe]
        elif known[0] != cframe:
            if cframe in known:
                known.remove(cframe)
            known.insert(0, cframe)
            del known[MAX_CFRAMES:]
        if not cframe:
            return 0, True, 0, 0
        slot = cframe + self._cframe_current
        data = slot_copies.get(slot) if slot_copies else None
        with_state = data is not None
        # (``with_state``: the slot's copy came from ``slot_copies``)
        before = slot_copies.get((slot, BEFORE)) if with_state else None  # type: ignore
        if data is None:
            data = self.read(slot, 8)
        top = other = U64.unpack(data)[0]
        if before is not None:
            other = U64.unpack(before)[0]
        late_copy = self._late_copy(cframe, slot_copies) if late_first and with_state else None
        late_top = 0
        if late_copy is not None:
            # taken in place of the copy made after the thread state, which becomes the other
            (top, late_top), other = late_copy, top
        if abs(top - cframe) < ENTRY_NEAR and other and abs(other - cframe) >= ENTRY_NEAR:
            # Copied later, the slot points to the run's entry frame: the run is returning (a
            # generator yielded to the C code that resumed it) or returned already, stale.
            # Copied just before, it pointed to the frame the run was in when the thread state
            # named it.  Both to the entry frame: the run is between frames for long
            # (collecting garbage, say): its caller is where the thread is.
            top, other, late_top = other, 0, 0
        if not top:
            # Only the root C frame, inside the thread state, is ever without a Python frame:
            # any other is a run of the eval loop (Python/ceval.c), which sets its frame at
            # once, so this one ended between the two reads and its stack slot was reused.
            raise MemoryReadError("C frame 0x%x has no frame any more" % cframe)
        return top, with_state, other if other != top else 0, late_top

    def thread_of(self, tstate: int) -> Tuple[int, int]:
        """(native TID as ThreadStack gives it, thread id) of the thread a state belongs to
        now, read afresh: a state freed as its thread ends is made again at the same address
        for the next one."""
        fields = self._ts.unpack_from(self.read(tstate, self._ts.size))
        native = fields[4] if self._iframe else self._pthread_tid(fields[3])
        if not 0 <= native <= MAX_TID:
            native = 0
        if self.host_tid is not None and native:
            native = self.host_tid(native)
        return native, fields[3]

    def _pthread_tid(self, thread_id: int) -> int:
        """<=3.10: the kernel TID stored in glibc's struct pthread (offset found at attach)."""
        if self.pthread_tid_offset is None or not thread_id:
            return 0
        try:
            return _U32.unpack(self.read(thread_id + self.pthread_tid_offset, 4))[0]
        except READ_ERRORS:
            return 0

    # -- frames ------------------------------------------------------------------------------
