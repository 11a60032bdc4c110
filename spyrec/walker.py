"""Interpreters -> thread states -> frames, read from a running target without stopping it.

One ``sample()`` costs a handful of reads per thread:

* ``_PyRuntime``: one read of the block holding ``interpreters.head`` (and, up to 3.11, the
  GIL's ``last_holder`` / ``locked`` / ``switch_number``);
* per interpreter: one read of ``next`` + ``tstate_head`` (+ the embedded ``_gil`` on 3.12+);
* per thread state: one read of the whole ``PyThreadState``, on 3.11/3.12 with the slots of
  the ``_PyCFrame``s it was last found in copied before and after it in the same system call
  (see ``_cframe_top``); on <=3.10 a 4-byte read of the kernel TID inside glibc's
  ``struct pthread``;
* frames, ``frame_kind == "iframe"`` (3.11+): the used part of the newest datastack chunk in one
  read, frames parsed from that local copy; older chunks are copied lazily when the chain leads
  there, and frames outside every chunk (generator / coroutine frames live in their generator
  object, 3.12+ entry frames on the C stack) are read directly; on 3.14+ the tag bits of
  ``f_executable`` (a ``_PyStackRef``) are cleared (``Layout.executable_tag_mask``).  Frames
  whose bytes did not change since the thread's last walk are not parsed again (``ChunkMemo``);
* frames, ``frame_kind == "pyframe"`` (<=3.10): heap ``PyFrameObject``s linked by ``f_back``;
  the frames that were on the thread's chain last time are fetched in one scatter read
  (``FrameChain``), new ones one read each;
* code objects: nothing once verified (see codeobjects.py);
* nothing beyond the thread state for a thread whose frames cannot have changed since the last
  sample: one that has not run since (the caller knows, from /proc) or, with the GIL in other
  hands all along, has not held it (see ``sample()``).

Costs measured on this machine are in docs/benchmarks.md ("Cost of one sample").

Race tolerance: the target keeps running, so any pointer may be stale.  A thread whose walk
hits an unreadable address, a wrong ``ob_type``, a self-link, a link up the chunk it came
from (callers sit below their callees), an owner out of range, an absurd instruction offset
or more than ``MAX_DEPTH`` frames is walked again at once, up to ``WALK_ATTEMPTS`` walks in
all (see ``_walk_again``); if the last one tears too, it is returned with ``torn=True`` and
the frames read so far, and counted in ``torn_reads``.  A chain may end only where a whole
one can (``_ends_at``, ``f_gen`` / ``co_flags`` on <=3.10): one that ends at a generator's
frame lost its callers when the generator yielded during the walk: they come back from an
earlier walk when its consumer still runs (``_splice``), or the walk is torn.  On 3.11/3.12
a walk whose innermost frame does not end where the thread state says the frame chunk does
tears too (``_fits_top``).  A broken thread list drops the rest of that interpreter's threads.
Innermost frames with no code (they returned between the copies of the thread state and of
the chunk: 3.14+ clears a frame's executable as it pops it) are stepped over, not torn.
``sample()`` raises only when ``_PyRuntime`` itself cannot be read; the caller
(PythonProcess) then tells a vanished process (TargetNotFound) from a torn read.
"""

import struct
from time import monotonic
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from spyrec.codeobjects import SKIP, CodeCache
from spyrec.errors import MemoryReadError
from spyrec.layouts.base import FRAME_OWNED_BY_GENERATOR, FRAME_OWNED_BY_THREAD, Layout
from spyrec.structs import FieldStruct

#: Frames a stack may have: deep recursions (``sys.setrecursionlimit``) are recorded whole.
MAX_DEPTH = 1 << 16
#: Past this many frames a walk also checks that it is not going round a loop of stale links.
DEEP = 2048
MAX_THREADS = 4096
#: The largest thread id Linux hands out (PID_MAX_LIMIT on 64-bit, include/linux/threads.h).
MAX_TID = 1 << 22
MAX_INTERPRETERS = 256
MAX_CHUNKS = 1024
#: Walks of one thread in one sample while they keep tearing (see StackWalker._walk_again).
WALK_ATTEMPTS = 5
#: Bytes of a thread's frame chunk copied past the top its torn walk found, when it is copied
#: with the thread state (``_walk_again``): room for the frames pushed since.
CHUNK_SLACK = 2048
#: Frames outside the chunk that a walk done again copies with the thread state.
MAX_PREFETCHED = 64
#: 3.11/3.12: C frames per thread whose pointer to the innermost frame is copied with the
#: thread state, latest first: one per run of the eval loop a thread goes in and out of (a
#: generator resumed from C, a callback; every call under ``-X perf``).
MAX_CFRAMES = 8
#: Generator frames whose callers a thread keeps (see StackWalker._splice), and for how long.
MAX_CALLERS = 512
CALLERS_TTL = 10.0
#: Distinct callers kept per generator code, latest first (see StackWalker._splice).
TAILS_PER_CODE = 32
#: Byte-range comparisons one walk may spend on reusing frames (see ChunkMemo).
MAX_COMPARES = 16
#: Bigger than any datastack chunk CPython allocates for sane code (16 KiB normally).
MAX_CHUNK_BYTES = 64 << 20
#: Instruction offsets outside this range are garbage (not-started 3.11 frames give -2).
MIN_OFFSET, MAX_OFFSET = -16, 1 << 26

#: The key of a C frame slot's copy taken before the thread state's, beside the slot's address.
BEFORE = "before"
#: A pointer this close to a C frame's address is to its run's entry frame, beside it on the
#: C stack (both are locals of _PyEval_EvalFrameDefault, Python/ceval.c 3.12); no other frame
#: lies on a C stack.
ENTRY_NEAR = 4096

_READ_ERRORS = (MemoryReadError, struct.error, OverflowError, ValueError)
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class ThreadStack(NamedTuple):
    """One Python thread state at one instant (created on the hot path: a plain tuple)."""

    native_tid: int  # kernel TID in our (the host's) PID namespace; 0 if unknown
    python_thread_id: int  # PyThreadState.thread_id (= threading.get_ident() in the target)
    frames: tuple  # ((code_key, instr_offset), ...), innermost first
    holds_gil: bool
    torn: bool  # the walk hit an inconsistency; frames holds what was read


class FrameChain:
    """The frame addresses of a thread's last walk (<=3.10), prepared for one batched read.

    Frames close in memory (a recursion's frames sit a few hundred bytes apart in the same
    pymalloc pool) are merged into one span, so the batch has fewer, larger iovecs.
    """

    __slots__ = ("chain", "index", "spans", "where")
    GAP = 1024  # merge frames less than this far apart

    def __init__(self, chain: List[int], size: int):
        self.chain = chain
        self.index = {addr: i for i, addr in enumerate(chain)}
        spans: List[List[int]] = []
        span_of = {}
        for addr in sorted(set(chain)):
            if spans and addr - spans[-1][1] <= self.GAP:
                spans[-1][1] = addr + size
            else:
                spans.append([addr, addr + size])
            span_of[addr] = len(spans) - 1
        # Copied in chain order, callees before callers: the pointer to the innermost frame
        # was read first, and the stack changes at that end.
        first = {}
        for i, addr in enumerate(chain):
            first.setdefault(span_of[addr], i)
        order = sorted(range(len(spans)), key=first.__getitem__)
        rank = {span: position for position, span in enumerate(order)}
        self.spans = [(spans[k][0], spans[k][1] - spans[k][0]) for k in order]
        self.where = [(rank[span_of[a]], a - spans[span_of[a]][0]) for a in chain]


class ChunkMemo:
    """A thread's last walk through its newest datastack chunk (3.11+), kept for reuse.

    Between two samples usually only the innermost frames change; the outer ones are
    suspended, and a suspended frame's bytes (header, locals, value stack) do not change.  The
    frames of one chunk are contiguous, callers below callees, so when the chunk's bytes from
    one frame of the last walk up to the end of a higher one's header are what they were, every
    frame of that stretch decodes exactly as it did, links included: their code addresses and
    offsets are taken from the last walk instead of being parsed again, a ``memcmp`` or a few
    instead of a Python loop over the frames (see ``StackWalker._reuse``).

    The chunk's frames form *runs*: stretches of the chain inside the chunk, ended where the
    chain leaves it (3.12+ C-stack entry frames, generator frames, older chunks) or stops.
    Reuse takes a run up to its end; what lies outside the chunk is outside the compared
    bytes, so it is read afresh, and the chain re-enters the chunk lower down.
    """

    __slots__ = ("chunk", "buf", "addrs", "starts", "runs", "codes", "offsets")

    def __init__(self, chunk: int, buf: bytes, addrs: List[int], starts: List[int],
                 runs: List[Tuple[int, int, int]], codes: List[int], offsets: List[int]):
        self.chunk = chunk
        self.buf = buf  # the chunk's copy, from its start
        self.addrs = addrs  # the walk's frames in this chunk, innermost (highest) first
        self.starts = starts  # for each, its index in ``codes`` / ``offsets``
        #: (end index in ``addrs``, end index in ``codes``, where the chain went next) per run
        self.runs = runs
        self.codes = codes  # the walk's code addresses and offsets (never changed afterwards)
        self.offsets = offsets

    def run_of(self, at: int) -> Tuple[int, int, int]:
        for run in self.runs:
            if run[0] > at:
                return run
        raise IndexError(at)


def _chunk_in_use(chunk: int, top: int) -> bool:
    """True when a thread state's datastack chunk and top bound a plausible stretch to copy."""
    return bool(chunk) and chunk < top <= chunk + MAX_CHUNK_BYTES


def _slot_copies(slots: List[Tuple[int, int]], copies: List[Optional[bytes]]) -> dict:
    """{slot: its copy after the thread state, (slot, BEFORE): its copy before} from the copies
    of ``slots`` in reverse, the thread state, ``slots`` (see StackWalker._copy_thread)."""
    count = len(slots)
    found = {}
    for (slot, _), before, after in zip(slots, reversed(copies[:count]), copies[count + 1:]):
        if after is not None:
            found[slot] = after
            if before is not None:
                found[slot, BEFORE] = before
    return found


def _copies_by_address(ranges: List[Tuple[int, int]], copies: List[Optional[bytes]]):
    """{address: copy} of the ranges that could be read, or None when there are none."""
    found = {addr: data for (addr, _), data in zip(ranges, copies) if data is not None}
    return found or None


def _tstates_by_tid(order: List[int], stacks) -> Dict[int, int]:
    """{native TID: thread state} from the list order and the stacks sampled along it (a
    state without frames gives way to one with frames for the same thread)."""
    found = {}
    for tstate, stack in zip(order, stacks):
        tid = stack.native_tid
        if tid and (stack.frames or tid not in found):
            found[tid] = tstate
    return found


def _block(fields: List[Tuple[int, str]]) -> Tuple[int, FieldStruct]:
    """A FieldStruct for fields of one struct, relative to the lowest offset (read from there)."""
    base = min(offset for offset, _ in fields)
    return base, FieldStruct([(offset - base, code) for offset, code in fields])


class StackWalker:
    """Samples every thread of every interpreter of one process."""

    def __init__(self, mem, layout: Layout, runtime: int, codes: CodeCache,
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

        rt, it, ts, fr = layout.runtime, layout.interp, layout.thread, layout.frame
        gil = layout.gil
        runtime_fields = [(rt.interpreters_head, "Q")]
        if layout.gil_kind == "runtime":
            runtime_fields += [(rt.gil + gil.last_holder, "Q"), (rt.gil + gil.locked, "i"),
                               (rt.gil + gil.switch_number, "Q")]
        self._rt_base, self._rt = _block(runtime_fields)

        interp_fields = [(it.next, "Q"), (it.tstate_head, "Q")]
        if layout.gil_kind == "interp":
            interp_fields += [(it.gil + gil.last_holder, "Q"), (it.gil + gil.locked, "i"),
                              (it.gil + gil.switch_number, "Q")]
        self._in_base, self._in = _block(interp_fields)
        self._gil_struct = FieldStruct([(gil.last_holder, "Q"), (gil.locked, "i"),
                                        (gil.switch_number, "Q")])
        self._gil_pointers = {}  # interp -> interp->ceval.gil, refreshed with the code cache
        # <=3.10: tstate -> the FrameChain of its last walk; 3.11+: tstate -> its ChunkMemo.
        self._chains = {}
        self._next_chains = {}
        self._memos = {}
        self._next_memos = {}
        #: tstate -> (its fields but ``next``, its stack, whether the stack is known to hold
        #: from this sample's GIL read on, the bytes of the thread state those fields were
        #: read from), for threads that did not run since.
        self._last = {}
        self._next_last = {}
        #: interp -> (GIL last_holder, switch_number) as the last sample read them.
        self._gil_seen = {}
        self._next_gil_seen = {}
        #: interp -> its thread states in list order, as the last sample followed them.
        self._orders = {}
        self._next_orders = {}
        #: native TID -> its thread state, as the last sample() found them (one interpreter
        #: only; see sample_some).
        self._tstates = None
        #: Stacks kept whole from the last sample instead of walked (a bench figure).
        self.kept_stacks = 0
        #: Walks done again because the one before tore (a benchmark figure).
        self.retried_walks = 0
        #: Frames taken from a ChunkMemo instead of being parsed (a benchmark figure).
        self.reused_frames = 0
        #: tstate -> {(generator frame address, its code): (its callers' codes and offsets,
        #: when seen, how many of those are its consumer and below, the consumer's address),
        #: its code: [such entries, latest first], and (its code, its callee's code or 0 when
        #: innermost): its offset then}, from the thread's walks (see _splice).
        self._callers = {}
        #: 3.11/3.12: tstate -> the C frames its walks last found it in, outside the thread
        #: state, latest first, at most MAX_CFRAMES (copied with it next time).
        self._cframes = {}
        #: Walks completed below a suspended generator from a recent whole walk (see _splice).
        self.spliced_stacks = 0
        self._now = 0.0
        #: tstate -> {address: None}, the frames outside the chunk its recent walks read,
        #: outermost first as last seen, at most MAX_PREFETCHED: what a walk done again copies.
        self._pools = {}

        thread_fields = [(ts.next, "Q"), (ts.interp, "Q"), (ts.frame, "Q"), (ts.thread_id, "Q")]
        self._iframe = layout.frame_kind == "iframe"
        if self._iframe:
            thread_fields += [(ts.native_thread_id, "q"), (ts.datastack_chunk, "Q"),
                              (ts.datastack_top, "Q")]
            if ts.base_frame is not None:
                thread_fields.append((ts.base_frame, "Q"))
        self._ts = FieldStruct(thread_fields)
        self._next_at = ts.next
        self._ts_size = max(ts.size, self._ts.size)
        self._cframe = layout.thread_frame_kind == "cframe"
        self._cframe_current = layout.cframe.current_frame if layout.cframe else 0
        #: 3.11/3.12: code address -> size of its frames in a chunk (see _fits_top).
        self._frame_bytes = codes.frame_bytes if layout.code.frame_words else None
        self._misfit = False  # the last _walk_iframes tore on _fits_top
        #: (len(frame_bytes) when made, its distinct sizes ascending) for _last_in_chunk.
        self._size_set = (-1, [])
        #: Walks whose innermost frame did not fit the thread state's chunk top (a figure).
        self.misfit_walks = 0

        if self._iframe:
            self._frame = FieldStruct([(fr.code, "Q"), (fr.previous, "Q"), (fr.instr, "Q"),
                                       (fr.owner, "B")])
            ch = layout.chunk
            self._chunk = FieldStruct([(ch.previous, "Q"), (ch.size, "Q"), (ch.top, "Q")])
            self._chunk_data = ch.data
            self._adaptive = layout.code.co_code_adaptive
            self._max_owner = layout.max_frame_owner
            self._skip_owner = (layout.skip_owner_from if layout.skip_owner_from is not None
                                else 256)
            #: 3.14+: f_executable is a tagged _PyStackRef; this clears the tag bits.
            self._untag = ~layout.executable_tag_mask
        else:
            self._frame = FieldStruct([(layout.ob_type, "Q"), (fr.previous, "Q"), (fr.code, "Q"),
                                       (fr.instr, "i"), (fr.gen, "Q"), (fr.executing, "B")])
            self._running = fr.executing_value
            self._lasti_scale = 2 if layout.instr_kind == "lasti_units" else 1
        self._frame_size = self._frame.size

    # -- threads ---------------------------------------------------------------------------

    def sample(self, still=frozenset()) -> List[ThreadStack]:
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
        try:
            interp, runtime_gil = self._runtime_state()
            stacks: List[ThreadStack] = []
            seen_interps = 0
            while interp and seen_interps < MAX_INTERPRETERS:
                seen_interps += 1
                try:
                    interp = self._sample_interpreter(interp, runtime_gil, stacks, still)
                except _READ_ERRORS:
                    self.torn_reads += 1
                    break
        finally:
            # Even a failed walk replaces the last one: a thread's kept stack must come from
            # the walk that followed its state read, never from an older one.
            self._chains = self._next_chains
            self._memos = self._next_memos
            self._last = self._next_last
            self._gil_seen = self._next_gil_seen
            self._orders = self._next_orders
        if seen_interps == 1:
            self._tstates = _tstates_by_tid(next(iter(self._orders.values())), stacks)
        return stacks

    def _sample_interpreter(self, interp: int, runtime_gil, stacks: List[ThreadStack],
                            still) -> int:
        """Append the stacks of one interpreter's threads; return the next interpreter."""
        values = self._in.unpack_from(self.read(interp + self._in_base, self._in.size))
        next_interp, tstate = values[0], values[1]
        last_holder, holder, gil_quiet = self._gil_state(interp, values, runtime_gil)
        visited = set()
        order = self._next_orders[interp] = []
        states = self._state_copies(interp, holder)
        # the loop runs once per thread (a thousand, in a server): what it uses, in locals
        unpack_state, last_of, kept_stack = self._ts.unpack_from, self._last.get, self._kept_stack
        unpack_next, next_at = _U64.unpack_from, self._next_at
        while tstate:
            if tstate in visited or len(visited) >= MAX_THREADS or tstate & 7:
                self.torn_reads += 1
                break
            visited.add(tstate)
            order.append(tstate)
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
                break
            stacks.append(stack)
            tstate = next_tstate
        return next_interp

    def _tick(self) -> None:
        """A sample begins: its time, and the code cache's periodic check."""
        now = self._now = monotonic()
        if self.codes.expire(now):
            self._gil_pointers.clear()  # re-read interp->ceval.gil once per period too

    def _runtime_state(self):
        """(the first interpreter, the runtime's GIL fields or None where each interpreter
        has its own), read now from _PyRuntime."""
        values = self._rt.unpack_from(self.read(self.runtime + self._rt_base, self._rt.size))
        return values[0], (values[1:] if len(values) > 1 else None)

    def _gil_state(self, interp: int, values, runtime_gil) -> Tuple[int, int, bool]:
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

    def sample_some(self, tids, still=frozenset()) -> Optional[List[ThreadStack]]:
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
        except _READ_ERRORS:
            return None
        if first_interp != interp or in_values[0] or in_values[1] != order[0]:
            return None  # another interpreter, or a thread state made at the head
        self._tick()
        # What these threads' walks keep goes into fresh tables, then replaces their entries
        # in the last sample's (the other threads' entries stand, not copied).
        self._next_last, self._next_memos, self._next_chains = {}, {}, {}
        self._next_gil_seen = dict(self._gil_seen)
        self._next_orders = orders
        stacks: List[ThreadStack] = []
        try:
            last_holder, holder, gil_quiet = self._gil_state(interp, in_values, runtime_gil)
            for tstate in wanted:
                stack = self._read_and_walk(tstate, interp, holder, last_holder, gil_quiet,
                                            still)[0]
                if stack is None:
                    return None  # a thread ended: its state was freed
                stacks.append(stack)
        except _READ_ERRORS:
            return None
        for kept, fresh in ((self._last, self._next_last), (self._memos, self._next_memos),
                            (self._chains, self._next_chains)):
            for tstate in wanted:
                kept.pop(tstate, None)
            kept.update(fresh)
        self._gil_seen = self._next_gil_seen
        return stacks

    def _read_and_walk(self, tstate: int, interp: int, holder: int, last_holder: int,
                       gil_quiet: bool, still):
        """(stack, next thread state) of one thread state read now, its last stack kept when
        the rules of ``sample()`` allow, else walked (again while torn, up to
        ``WALK_ATTEMPTS``); (None, 0) when the state cannot be read or belongs to another
        interpreter: the list was changing under the walk."""
        prefetched = slot_copies = None
        try:
            if self._cframe:
                memo = self._memos.get(tstate)
                ts, prefetched, slot_copies = self._copy_thread(
                    tstate, (memo.chunk, memo.chunk + len(memo.buf)) if memo else None)
                if ts is None:
                    raise MemoryReadError("thread state 0x%x unreadable" % tstate)
            else:
                ts = self.read(tstate, self._ts_size)
        except _READ_ERRORS:
            self.torn_reads += 1  # freed while we followed the list: drop the rest
            return None, 0
        fields = self._ts.unpack_from(ts)
        if fields[1] != interp:
            self.torn_reads += 1
            return None, 0
        state = fields[1:]
        last = self._last.get(tstate)
        if last is not None and last[0] == state:
            by_gil = gil_quiet and last[2] and tstate != last_holder
            if by_gil or last[1].native_tid in still:
                return (self._kept_stack(tstate, (state, last[1], last[2], ts), tstate == holder,
                                         by_gil), fields[0])
        stack = self._walk_thread(tstate, ts, fields, tstate == holder, prefetched, slot_copies)
        attempts = WALK_ATTEMPTS - 1
        fullest = stack
        while stack.torn and attempts:
            attempts -= 1
            retried = self._walk_again(tstate, interp, holder, fields)
            if retried is None:
                break
            ts, fields, stack = retried
            state = fields[1:]
            if len(stack.frames) > len(fullest.frames):
                fullest = stack
        if stack.torn:
            # Every walk tore: a torn walk keeps the frames it read before the tear, so
            # the one that read most holds most of the thread's real stack.
            stack = fullest
            self.torn_reads += 1
        elif stack.native_tid:  # an unknown TID may be found later (<=3.10): walk again
            self._next_last[tstate] = (state, stack, True, ts)
        return stack, fields[0]

    def _state_copies(self, interp: int, holder: int) -> Dict[int, bytes]:
        """{tstate: a copy of it} for the threads whose last stack may be kept this time, all
        copied in one ``process_vm_readv`` (empty when fewer than two).

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
        except _READ_ERRORS:
            return {}  # each thread state is read on its own, as without the batch
        return {tstate: data for tstate, data in zip(wanted, copies) if data is not None}

    def _copy_thread(self, tstate: int, extent=None):
        """(a copy of the thread state or None, {address: copy} of frames copied with it or
        None, its C frames' slot copies or None), from one ``process_vm_readv``.

        A thread whose stack changes every microsecond (generators resumed and suspended,
        short calls) has moved on between separate reads: a chain assembled from them puts
        frames of different moments together.  So the thread state, its newest chunk as
        ``extent`` (start, top) last found it (with room to grow), and the frames outside the
        chunk that its recent walks read (generator and entry frames: its pool, see
        ``_remember_outside``) are copied in one call, a fraction of a microsecond apart.

        3.11/3.12 copy the slots of the thread's recent C frames just before and after the
        thread state (see _cframe_top), the most recent C frame's nearest to it on both sides,
        then the chunk and the pool, latest frames first:
        what the slots point to is then copied soonest after them.  Elsewhere the thread state
        comes last, callers before it (a stack changes at its inner end); a first walk there
        copies the thread state alone, the chunk after it, as measured best on 3.13-3.15.
        """
        chunk = []
        if extent is not None and _chunk_in_use(*extent):
            chunk = [(extent[0], extent[1] - extent[0] + CHUNK_SLACK)]
        pool = self._pools.get(tstate, ())
        if not self._cframe:
            if extent is None:  # a first walk
                return self.read(tstate, self._ts_size), None, None
            ranges = chunk + [(addr, self._frame_size) for addr in pool]
            copies = self.mem.read_many(ranges + [(tstate, self._ts_size)])
            return copies[-1], _copies_by_address(ranges, copies), None
        slots = [(cframe + self._cframe_current, 8) for cframe in self._cframes.get(tstate, ())]
        ranges = chunk + [(addr, self._frame_size) for addr in reversed(pool)]
        if not slots and not ranges:
            return self.read(tstate, self._ts_size), None, None
        copies = self.mem.read_many(slots[::-1] + [(tstate, self._ts_size)] + slots + ranges)
        after = len(slots) + 1 + len(slots)
        return (copies[len(slots)], _copies_by_address(ranges, copies[after:]),
                _slot_copies(slots, copies[:after]) if slots else None)

    def _walk_again(self, tstate: int, interp: int, holder: int, torn_fields):
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
        except _READ_ERRORS:
            return None
        fields = self._ts.unpack_from(ts)
        if fields[1] != interp:
            return None
        return ts, fields, self._walk_thread(tstate, ts, fields, tstate == holder, prefetched,
                                             slot_copies)

    def _kept_stack(self, tstate: int, entry: tuple, holds_gil: bool,
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

    def _interp_gil(self, interp: int, values) -> Tuple[int, int, int]:
        """(last_holder, locked, switch_number) of the GIL this interpreter uses (3.12+: via
        ceval.gil)."""
        it = self.layout.interp
        pointer = self._gil_pointers.get(interp)
        if pointer is None:
            pointer = _U64.unpack(self.read(interp + it.ceval_gil, 8))[0]
            self._gil_pointers[interp] = pointer
        if pointer == interp + it.gil:
            return values[2], values[3], values[4]
        if not pointer:
            return 0, 0, 0
        return self._gil_struct.unpack_from(self.read(pointer, self._gil_struct.size))

    def _walk_thread(self, tstate: int, ts: bytes, fields, holds_gil: bool,
                     prefetched=None, slot_copies=None) -> ThreadStack:
        """The stack of one thread; ``prefetched``: {address: bytes} of frames copied with its
        state, ``slot_copies`` those of its C frames' slots (see _slot_copies)."""
        thread_id = fields[3]
        torn = False
        with_state = True  # the innermost frame's address was copied with the thread state
        native = fields[4] if self._iframe else 0
        codes = ()
        try:
            if self._iframe:
                top, other = fields[2], 0
                if self._cframe:
                    try:
                        top, with_state, other = self._cframe_top(tstate, ts, top, slot_copies)
                    except _READ_ERRORS:
                        top = 0  # the C frame is gone: see below
                        torn = True
                sentinel = fields[7] if len(fields) > 7 else 0
                if top:
                    codes, offsets, torn = self._walk_iframes(
                        top, fields[5], fields[6], sentinel, tstate, prefetched, with_state,
                        with_state and not other)
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
            else:
                native = self._pthread_tid(thread_id)
                codes, offsets, torn = self._walk_pyframes(fields[2], tstate)
        except _READ_ERRORS:  # a torn stack of a known thread: not one of an unknown thread 0
            codes, torn = (), True
        if not 0 <= native <= MAX_TID:  # not a thread id: unknown, like one not found yet
            native = 0
        if self.host_tid is not None and native:
            native = self.host_tid(native)
        if not codes:
            return ThreadStack(native, thread_id, (), holds_gil, torn)
        verified = self.codes.verified
        try:
            keys = list(map(verified.__getitem__, codes))
        except KeyError:
            keys = self.codes.keys_for(codes)
        if None in keys:  # not a code object: the walk is torn from there on
            cut = keys.index(None)
            keys, offsets, torn = keys[:cut], offsets[:cut], True
        if keys and keys[0] == SKIP and not torn and not with_state:
            # An entry frame innermost, its owner overwritten: the C stack it lies on has been
            # reused since its run of the eval loop returned (see _walk_iframes).
            return ThreadStack(native, thread_id, (), holds_gil, True)
        frames = zip(keys, offsets)
        if SKIP in keys:  # interpreter-internal frames
            frames = [frame for frame in frames if frame[0] != SKIP]
        return ThreadStack(native, thread_id, tuple(frames), holds_gil, torn)

    def _cframe_top(self, tstate: int, ts: bytes, cframe: int,
                    slot_copies=None) -> Tuple[int, bool, int]:
        """3.11/3.12: tstate->cframe->current_frame, whether it was copied with the thread
        state (from its root C frame inside it, or ``slot_copies``) or read after it, and the
        slot's other copy when the two differ (else 0)."""
        at = cframe - tstate + self._cframe_current
        if 0 <= at <= len(ts) - 8:
            self._cframes.pop(tstate, None)
            return _U64.unpack_from(ts, at)[0], True, 0
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
            return 0, True, 0
        slot = cframe + self._cframe_current
        data = slot_copies.get(slot) if slot_copies else None
        with_state = data is not None
        if data is None:
            data = self.read(slot, 8)
        top = other = _U64.unpack(data)[0]
        if with_state and slot_copies.get((slot, BEFORE)) is not None:
            other = _U64.unpack(slot_copies[slot, BEFORE])[0]
            if abs(top - cframe) < ENTRY_NEAR and other and abs(other - cframe) >= ENTRY_NEAR:
                # Copied after the thread state, the slot points to the run's entry frame:
                # the run is returning (a generator yielded to the C code that resumed it) or
                # returned already, stale.  Copied just before, it pointed to the frame the
                # run was in when the thread state named it.  Both to the entry frame: the
                # run is between frames for long (collecting garbage, say): its caller is
                # where the thread is.
                top, other = other, 0
        if not top:
            # Only the root C frame, inside the thread state, is ever without a Python frame:
            # any other is a run of the eval loop (Python/ceval.c), which sets its frame at
            # once, so this one ended between the two reads and its stack slot was reused.
            raise MemoryReadError("C frame 0x%x has no frame any more" % cframe)
        return top, with_state, other if other != top else 0

    def _pthread_tid(self, thread_id: int) -> int:
        """<=3.10: the kernel TID stored in glibc's struct pthread (offset found at attach)."""
        if self.pthread_tid_offset is None or not thread_id:
            return 0
        try:
            return _U32.unpack(self.read(thread_id + self.pthread_tid_offset, 4))[0]
        except _READ_ERRORS:
            return 0

    # -- frames ------------------------------------------------------------------------------

    def _walk_pyframes(self, addr: int, tstate: int):
        """<=3.10: follow f_back from tstate->frame.

        Frame objects are separate heap objects, so each costs a read.  But a thread's outer
        frames rarely change between samples (and 3.8/3.9 reuse each code object's "zombie"
        frame), so once the walk reaches an address that was on this thread's chain last time,
        the rest of that old chain is fetched in one scatter read and kept as long as every
        ``f_back`` links to the next guessed frame.
        """
        codes: List[int] = []
        offsets: List[int] = []
        chain: List[int] = []
        read, unpack, size = self.read, self._frame.unpack_from, self._frame_size
        frame_type, scale = self.frame_type, self._lasti_scale
        guess = self._chains.get(tstate)
        torn = False
        spliced = None
        seen = None  # past DEEP frames, the chain's addresses (see below)
        gen = 0
        gens: List[int] = []  # indexes of generator frames in ``chain``
        while addr:
            if len(chain) >= MAX_DEPTH or addr & 7:
                torn = True
                break
            if len(chain) >= DEEP:  # a loop of stale links would run on to MAX_DEPTH frames
                if seen is None:
                    seen = set(chain)
                if addr in seen:
                    torn = True
                    break
                seen.add(addr)
            if guess is not None and addr in guess.index:
                bufs = self.mem.read_many(guess.spans)
                batch, guess = guess, None  # one batch per walk; then frame by frame
                # Every frame found in the batch is taken from it, in whatever order the chain
                # now visits them: copies made in one call agree with each other, where a
                # frame read again later may have moved on.
                taken = set()
                while addr in batch.index and addr not in taken and len(chain) < MAX_DEPTH:
                    taken.add(addr)
                    span, at = batch.where[batch.index[addr]]
                    buf = bufs[span]
                    if buf is None:
                        break
                    ob_type, back, code, lasti, gen, state = unpack(buf, at)
                    if frame_type and ob_type != frame_type or back == addr:
                        break
                    chain.append(addr)
                    codes.append(code)
                    offsets.append(lasti * scale)
                    if gen:
                        gens.append(len(chain) - 1)
                    addr = back
                continue
            try:
                ob_type, back, code, lasti, gen, state = unpack(read(addr, size))
            except _READ_ERRORS:
                torn = True
                break
            if frame_type and ob_type != frame_type or back == addr:
                torn = True
                break
            # A function's frame found returned since the thread state named it is kept: the
            # thread was in it then, called from the same frames (it keeps its code and links
            # until reused).  Walking again instead would favour the calls that last longest.
            chain.append(addr)
            codes.append(code)
            offsets.append(lasti * scale)
            if gen:
                gens.append(len(chain) - 1)
            addr = back
        if not torn:
            if gen or codes and self.codes.is_generator(codes[-1]):
                # The chain ended at a generator's frame: it yielded (or returned) while we
                # read its callee, and its f_back was cleared (gen_send_ex, Objects/genobject.c
                # 3.8-3.10); a finished generator's frame has lost its f_gen too.
                spliced = self._splice(tstate, chain[-1], codes, offsets, self._pyframe_live)
                torn = spliced is None
                spliced = (len(chain) - 1,) + spliced if spliced else None
            if gens and not torn:
                self._note_callers(tstate, [(chain[i], i) for i in gens], codes, offsets,
                                   chain.__getitem__, spliced)
        old = self._chains.get(tstate)
        if old is not None and old.chain == chain:
            self._next_chains[tstate] = old
        elif chain:
            self._next_chains[tstate] = FrameChain(chain, size)
        return codes, offsets, torn

    def _walk_iframes(self, addr: int, chunk: int, top: int, sentinel: int = 0,
                      tstate: int = 0, prefetched=None, with_state: bool = True,
                      settled: bool = False):
        """3.11+: follow ``previous`` through local copies of the datastack chunks, down to
        NULL or (3.15+) the thread's base frame ``sentinel``, which is not read.

        Stretches of frames in the newest chunk whose bytes are unchanged are taken from the
        thread's last walk (see ChunkMemo); the others are parsed one by one.  ``with_state``:
        whether ``addr`` was copied with the thread state (see _cframe_top); ``settled``: and
        its copies on both sides of the thread state agree (see _fits_top).
        """
        self._misfit = False
        codes: List[int] = []
        offsets: List[int] = []
        outside = []  # frames read outside every chunk copy (generators', C-stack entry frames)
        gens = []  # (address, index in codes) of the generator frames read outside the chunk
        if not addr:
            return codes, offsets, False
        regions = []  # (lo, hi, bytes) copies of chunks, newest first
        older = 0
        if _chunk_in_use(chunk, top):
            try:
                copy = prefetched.get(chunk) if prefetched else None
                if copy is not None and top - chunk <= len(copy):
                    buf = copy[:top - chunk]  # copied with the thread state
                else:
                    buf = self.mem.read(chunk, top - chunk)
                regions.append((chunk, top, buf))
                older = _U64.unpack_from(buf)[0]
            except _READ_ERRORS:
                pass
        # Frames inside the newest chunk copy: [chunk + header, top - frame size].
        base, hi, buf = regions[0] if regions else (0, 0, b"")
        lo = base + self._chunk_data
        size = self._frame_size
        hi -= size
        unpack, adaptive, untag = self._frame.unpack_from, self._adaptive, self._untag
        max_owner, skip_owner = self._max_owner, self._skip_owner
        add_code, add_offset = codes.append, offsets.append
        chunks_left = MAX_CHUNKS
        steps_left = MAX_DEPTH

        # Frames of the newest chunk, innermost first, and the runs they form (see ChunkMemo).
        chunk_addrs: List[int] = []
        chunk_starts: List[int] = []
        runs: List[Tuple[int, int, int]] = []
        in_run = False
        # Callers sit below their callees in a chunk; a frame at or above the last one taken
        # from the chunk is a torn read (the C-stack and generator frames read in between are
        # live, newer than the chunk copy).
        floor = hi + 1
        memo = self._memos.get(tstate) if regions else None
        old_addrs = memo.addrs if memo is not None and memo.chunk == base else ()
        at = 0
        parse_at = 0  # a frame found changed: parse it, do not look it up again
        compares_left = MAX_COMPARES
        owner = -1  # of the last frame parsed; -1: none, or the chain's end taken from memo
        gen_at = 0  # the address of the frame being parsed, when it is a generator's
        broken = False  # the chain led to something that is not a frame
        last_region = None  # the older chunk copy the last frame outside the newest one was in
        seen_deep = set()  # past DEEP steps, the frames taken: a loop of stale links ends there
        after_gen = False  # the last frame taken was a generator's
        consumers = {}  # index in codes -> address, of frames that called a generator
        visited = 0  # the frame taken before ``addr``
        link = 0  # the frame taken before the first one in the newest chunk
        while addr and addr != sentinel:
            steps_left -= 1
            if steps_left < 0 or addr & 7 or steps_left < MAX_DEPTH - DEEP and addr in seen_deep:
                return codes, offsets, True
            if steps_left < MAX_DEPTH - DEEP:
                seen_deep.add(addr)
            if lo <= addr <= hi:
                if addr >= floor:
                    return codes, offsets, True
                if not chunk_addrs:
                    link = visited
                if old_addrs and addr != parse_at and compares_left > 0:
                    while at < len(old_addrs) and old_addrs[at] > addr:
                        at += 1
                    if at < len(old_addrs) and old_addrs[at] == addr:
                        if after_gen:
                            consumers[len(codes)] = addr
                            after_gen = False
                        taken, compares, addr, run_ended = self._reuse(
                            memo, at, buf, compares_left, codes, offsets, chunk_addrs,
                            chunk_starts)
                        compares_left -= compares
                        if taken:
                            at += taken
                            steps_left -= taken - 1
                            floor = chunk_addrs[-1]
                            if run_ended:
                                runs.append((len(chunk_addrs), len(codes), addr))
                                in_run = False
                                owner = -1  # the last walk's end, unchanged: it was whole
                            else:
                                in_run = True
                                parse_at = addr
                            continue
                floor = addr
                code, previous, instr, owner = unpack(buf, addr - base)
                chunk_addrs.append(addr)
                chunk_starts.append(len(codes))
                in_run = True
            else:
                if in_run:
                    runs.append((len(chunk_addrs), len(codes), addr))
                    in_run = False
                # Callers in an older chunk follow each other there: try the last one first.
                if last_region is not None and \
                        last_region[0] + self._chunk_data <= addr <= last_region[1] - size:
                    found = last_region
                else:
                    found = self._find_region(regions, addr)
                while found is None and older and chunks_left:
                    chunks_left -= 1
                    older = self._copy_chunk(older, regions)
                    found = self._find_region(regions, addr)
                try:
                    if found is None:  # generator frame, or a chunk we could not copy
                        if addr in outside:  # a cycle through stale links
                            broken = True
                            break
                        data = prefetched.get(addr) if prefetched else None
                        if data is None:
                            data = self.read(addr, size)
                        outside.append(addr)
                        code, previous, instr, owner = unpack(data)
                        if owner == FRAME_OWNED_BY_GENERATOR:
                            gen_at = addr
                    else:
                        last_region = found
                        code, previous, instr, owner = unpack(found[2], addr - found[0])
                except _READ_ERRORS:
                    broken = True
                    break
            if owner > max_owner or previous == addr:
                broken = True
                break
            if not codes and not with_state and (
                    owner >= skip_owner or outside and outside[-1] == addr
                    and owner != FRAME_OWNED_BY_GENERATOR and regions):
                # Read after the thread state, the C frame (3.12) that named the innermost frame
                # may have ended: its run of the eval loop returned, its stack slot still points
                # to its entry frame, callers intact (or, the C stack reused, to a frame whose
                # owner was overwritten).  Taken as is, the thread would seem to be in them, not
                # in what it runs now.  A live innermost frame is a function's, in the newest
                # chunk, or a generator's.
                return codes, offsets, True
            if owner < skip_owner:
                code &= untag
                if not code and not codes:
                    # Innermost frames that returned between the copies of the thread state
                    # and of the chunk: 3.14+ clears a frame's executable as it pops it.  The
                    # first live frame below is where the thread is now.
                    addr = previous
                    gen_at = 0
                    continue
                offset = instr - code - adaptive
                if not MIN_OFFSET <= offset < MAX_OFFSET:
                    broken = True
                    break
                add_code(code)
                add_offset(offset)
                if gen_at:
                    gens.append((gen_at, len(codes) - 1))
                    gen_at = 0
                    after_gen = True
                elif after_gen:
                    consumers[len(codes) - 1] = addr
                    after_gen = False
            visited = addr
            addr = previous
        if chunk_addrs and not self._fits_top(chunk_addrs[0], codes, chunk_starts[0], top,
                                              buf, base, (chunk_addrs[0], link), settled):
            self._misfit = True
            self.misfit_walks += 1
            return codes, offsets, True
        spliced = None
        if broken or not addr and not self._ends_at(owner, sentinel):
            # Cut right below a generator's frame: its link was cleared (NULL) or is stale (on
            # 3.12+ it led to the entry frame on the C stack of the run that resumed it).
            if (broken or owner == FRAME_OWNED_BY_GENERATOR) and gens \
                    and gens[-1][1] == len(codes) - 1:

                def live(frame: int, code: int) -> bool:
                    """A frame of the thread (not a generator's) running ``code`` now."""
                    region = self._find_region(regions, frame)
                    if region is None:
                        return False
                    found, _, _, found_owner = unpack(region[2], frame - region[0])
                    return found_owner == FRAME_OWNED_BY_THREAD and found & untag == code

                spliced = self._splice(tstate, gens[-1][0], codes, offsets, live)
            if not spliced:
                self._remember_outside(tstate, outside)
                return codes, offsets, True
            below, consumer = spliced
            if not chunk_addrs and lo <= consumer <= hi and \
                    not self._fits_top(consumer, codes, len(codes) - below, top, buf, base,
                                       (consumer,), settled):
                # The consumer the callers were taken from is not where the thread state
                # says the thread's frames end: the generator yielded, or its callee
                # returned, between the copies.
                self._misfit = True
                self.misfit_walks += 1
                self._remember_outside(tstate, outside)
                return codes, offsets, True
            spliced = (gens[-1][1],) + spliced
            addr = sentinel
        if gens:
            self._note_callers(tstate, gens, codes, offsets, consumers.get, spliced)
        if outside:
            self._remember_outside(tstate, outside)
        if in_run:
            runs.append((len(chunk_addrs), len(codes), addr))
        if regions:
            self._next_memos[tstate] = ChunkMemo(base, buf, chunk_addrs, chunk_starts, runs,
                                                 codes, offsets)
        return codes, offsets, False

    def _last_in_chunk(self, chunk: int, top: int, prefetched=None) -> int:
        """3.11/3.12: the frame that ends where the thread state says the chunk's used part
        does (see _fits_top), found from the sizes of the code objects seen so far in the
        chunk's copy made with the thread state; 0 when none does, or there is no such copy."""
        sizes = self._frame_bytes
        copy = prefetched.get(chunk) if prefetched else None
        if not sizes or copy is None or not _chunk_in_use(chunk, top) or top - chunk > len(copy):
            return 0
        buf = copy[:top - chunk]
        if self._size_set[0] != len(sizes):
            self._size_set = (len(sizes), sorted(set(sizes.values())))
        lowest = self._chunk_data
        for size in self._size_set[1]:
            at = len(buf) - size
            if at < lowest:
                break
            code, _, _, owner = self._frame.unpack_from(buf, at)
            if owner == FRAME_OWNED_BY_THREAD and sizes.get(code & self._untag) == size:
                return chunk + at
        return 0

    def _fits_top(self, frame: int, codes: List[int], at: int, top: int, buf: bytes = b"",
                  base: int = 0, links=(), settled: bool = False) -> bool:
        """3.11/3.12: whether the innermost frame a walk found in the newest chunk (``frame``,
        running ``codes[at]``) ends where the thread state says the chunk's used part does.

        A thread's frames are pushed on its chunk one after the other, each taking the size its
        code asks for (3.11 _PyFrame_Push in Python/frame.c, 3.12 _PyFrame_PushUnchecked in
        Include/internal/pycore_frame.h), so the frame the thread is in, or the
        one its generators were resumed from, is the last one.  The pointer to the innermost
        frame is read from a C frame, apart from the thread state: when the thread called or
        returned between the two copies they disagree, and a walk from that pointer would put
        the thread in a frame it had left or not yet entered.

        One frame more, linked back to the walk (``links``: the frame, or the C-stack entry
        frame it was reached through), is the thread returning from that frame: the eval loop
        names the caller first, then clears the callee's locals, which may free a whole
        tree, then pops it (3.12 RETURN_VALUE in Python/bytecodes.c; 3.11 _PyEval_Vector in
        Python/ceval.c, for a frame C code called); or entering it, its link set.  That is taken
        as it is when the C frame's slot read the same on both sides of the thread state
        (``settled``): the state lasted the whole copy.  ``buf``: the newest chunk's copy
        from ``base``.
        """
        sizes = self._frame_bytes
        if sizes is None or at >= len(codes):
            return True
        size = sizes.get(codes[at])
        if size is None or frame + size == top:
            return True
        above = frame + size - base
        if not settled or not 0 <= above <= len(buf) - self._frame_size:
            return False
        code, previous, _, owner = self._frame.unpack_from(buf, above)
        above_size = sizes.get(code & self._untag)
        return owner == FRAME_OWNED_BY_THREAD and previous in links and \
            above_size is not None and frame + size + above_size == top

    def _where_it_ran(self, tstate: int, codes: List[int], offsets: List[int]) -> None:
        """Set the offset of the last generator frame in ``codes``, read after it yielded.

        It was then at its ``yield``, where it spends next to no time; when the thread state
        was read it was running its callee, so where it calls that, or (found innermost) its
        own code, so where it last did so, as its whole walks saw it (see _note_callers)."""
        callers = self._callers.get(tstate)
        if callers:
            callee = codes[-2] if len(codes) > 1 else 0
            offsets[-1] = callers.get((codes[-1], callee), offsets[-1])

    def _note_callers(self, tstate: int, gens, codes: List[int], offsets: List[int],
                      address_of, spliced=None) -> None:
        """Remember, for each generator frame of a whole walk, the frames that called it.

        ``gens`` holds (frame address, its index in ``codes``); ``address_of(index)`` gives
        the address of the frame at an index that follows a generator's (None if unknown);
        ``spliced`` (index, consumer length, consumer address) names a generator frame whose
        callers ``_splice`` appended: it is not remembered again, but its consumer is that of
        the generators it called.
        """
        callers = self._callers.get(tstate)
        if callers is None:
            if len(self._callers) >= MAX_THREADS:
                self._callers.clear()
            callers = self._callers[tstate] = {}
        elif len(callers) >= MAX_CALLERS:
            callers.clear()
        now = self._now
        # The consumer of a run of adjacent generators is the frame after its outermost one.
        outer, below, consumer = spliced if spliced else (-1, 0, None)
        for addr, i in reversed(gens):
            if i == outer:
                continue
            if outer != i + 1:
                below, consumer = len(codes) - (i + 1), address_of(i + 1)
            outer = i
            if consumer is None:
                continue
            entry = (codes[i + 1:], offsets[i + 1:], now, below, consumer)
            callers[addr, codes[i]] = entry
            # Where it calls its callee, or where it runs its own code (callee 0).
            callers[codes[i], codes[i - 1] if i else 0] = offsets[i]
            recent = callers.get(codes[i])
            if recent is None:
                callers[codes[i]] = [entry]
            elif recent[0][0] != entry[0]:
                recent.insert(0, entry)
                del recent[TAILS_PER_CODE:]

    def _splice(self, tstate: int, addr: int, codes: List[int], offsets: List[int],
                live) -> Optional[Tuple[int, int]]:
        """Complete a walk that ended at a suspended generator's frame ``addr``; returns the
        appended callers' consumer (how many of them it and its callers are, its address), or
        None if none were appended.

        A generator that yields clears its frame's link to its caller, so a walk that reads
        its frame just after it yielded ends there.  Reading again rarely helps: a chain of
        generators that passes every item up and down (``yield from``, a generator consumed
        by ``list()`` or ``str.join``) is rebuilt every microsecond or so, faster than any read.
        But a generator is resumed from where it was suspended: its callers are those a
        recent walk found below the same frame running the same code, at the same offsets (a
        caller waits at the call); failing that, those found below another generator object
        of the same code (a new one, most often made on the same path).  They are appended
        only if their consumer, the first caller that is not a generator, is running now
        where it was, the same code (``live(address, code)``): a generator object freed and
        made again at the same address may serve another consumer, another phase of the
        program.  The frames below a live consumer are its callers, unchanged.  The generator
        frames read before this one are then remembered with their callers in turn.
        """
        callers = self._callers.get(tstate)
        if not callers:
            return None
        code = codes[-1]
        known = callers.get((addr, code))
        checked = set()
        for tail, tail_offsets, seen, below, consumer in \
                ([known] if known else []) + callers.get(code, []):
            if self._now - seen > CALLERS_TTL or (consumer, tail[-below]) in checked:
                continue
            if (known is None or tail is not known[0]) and code in tail[:len(tail) - below]:
                # A generator that delegates to another of its own code (a recursive ``yield
                # from``): a tail found below another object of that code may belong to any
                # level of the recursion, and would add or drop levels.
                continue
            checked.add((consumer, tail[-below]))
            if live(consumer, tail[-below]):
                self._where_it_ran(tstate, codes, offsets)
                codes.extend(tail)
                offsets.extend(tail_offsets)
                self.spliced_stacks += 1
                return below, consumer
        return None

    def _pyframe_live(self, frame: int, code: int) -> bool:
        """<=3.10: whether the frame object at ``frame`` runs ``code`` now (see _splice).

        A returned frame keeps its code and links, waiting to be reused for the next call of
        its code: only its running state tells."""
        at = self.layout.frame.executing
        try:
            data = self.read(frame, max(self._frame_size, at + 1))
        except _READ_ERRORS:
            return False
        ob_type, _, found, _, _, _ = self._frame.unpack_from(data)
        return (found == code and data[at] == self.layout.frame.executing_value
                and not (self.frame_type and ob_type != self.frame_type))

    def _remember_outside(self, tstate: int, outside: List[int]) -> None:
        """Add a walk's frames outside the chunk to the thread's pool (see _walk_again).

        A chain of generators is rebuilt for every item it yields, from a few generator
        objects whose frames keep their addresses, so a small pool covers them.
        """
        pool = self._pools.get(tstate)
        if pool is None:
            if len(self._pools) >= MAX_THREADS:
                self._pools.clear()
            pool = self._pools[tstate] = {}
        for addr in reversed(outside):
            pool.pop(addr, None)
            pool[addr] = None
        while len(pool) > MAX_PREFETCHED:
            del pool[next(iter(pool))]

    def _ends_at(self, owner: int, sentinel: int) -> bool:
        """Whether a chain may end (``previous`` NULL) at a frame with this owner.

        A generator that yields while its callee is read clears its ``previous``
        (Objects/genobject.c and the YIELD_VALUE instruction, 3.11+), which would end the walk
        at it with its callers lost.  So a chain ends only where a whole one can: at the
        thread's base frame when there is one (3.15+), at an entry frame from 3.12 on (each
        run of the eval loop starts with one), else at any frame but a generator's.
        """
        if sentinel:
            return False
        if owner < 0:
            return True
        if self._skip_owner < 256:
            return owner >= self._skip_owner
        return owner != FRAME_OWNED_BY_GENERATOR

    def _reuse(self, memo: "ChunkMemo", at: int, buf: bytes, compares_left: int,
               codes: List[int], offsets: List[int], chunk_addrs: List[int],
               chunk_starts: List[int]) -> Tuple[int, int, int, bool]:
        """Take from ``memo`` the frames of its run from frame ``at`` down that are unchanged.

        Frames ``at``..``m`` of a run are unchanged when the chunk's bytes from frame ``m`` up
        to the end of frame ``at``'s header are what they were (ChunkMemo).  The whole rest of
        the run is tried first; when something in it changed (say a loop variable of an outer
        frame), a binary search finds the longest unchanged stretch from ``at``, in at most
        ``compares_left`` comparisons.

        Returns (frames taken, comparisons made, the address the chain goes to next, whether
        that ends the run); when nothing is taken the address is ``memo.addrs[at]`` itself.
        """
        addrs, old, size, base = memo.addrs, memo.buf, self._frame_size, memo.chunk
        end, stop, exit_addr = memo.run_of(at)
        top = addrs[at] - base + size
        if buf[top - size:top] != old[top - size:top]:  # this frame changed (the innermost)
            return 0, 1, addrs[at], False
        compares = 2
        low = addrs[end - 1] - base
        if buf[low:top] == old[low:top]:
            last = end - 1
        else:
            good, bad = at, end - 1  # frames at..good are unchanged; at..bad are not
            while bad - good > 1 and compares < compares_left:
                compares += 1
                mid = (good + bad) // 2
                low = addrs[mid] - base
                if buf[low:top] == old[low:top]:
                    good = mid
                else:
                    bad = mid
            last = good
        first = memo.starts[at]
        upto = stop if last == end - 1 else memo.starts[last + 1]
        shift = len(codes) - first
        codes.extend(memo.codes[first:upto])
        offsets.extend(memo.offsets[first:upto])
        chunk_addrs.extend(addrs[at:last + 1])
        chunk_starts.extend([s + shift for s in memo.starts[at:last + 1]] if shift
                            else memo.starts[at:last + 1])
        taken = last + 1 - at
        self.reused_frames += taken
        if last == end - 1:
            return taken, compares, exit_addr, True
        return taken, compares, addrs[last + 1], False

    def _find_region(self, regions, addr: int):
        data, size = self._chunk_data, self._frame_size
        for region in regions:
            if region[0] + data <= addr <= region[1] - size:
                return region
        return None

    def _copy_chunk(self, chunk: int, regions) -> int:
        """Copy the used part of an older chunk (its ``top`` counts slots); return its previous."""
        try:
            previous, size, top = self._chunk.unpack_from(self.read(chunk, self._chunk.size))
            used = self._chunk_data + 8 * top
            if not 0 < used <= min(size, MAX_CHUNK_BYTES):
                return 0
            regions.append((chunk, chunk + used, self.mem.read(chunk, used)))
            return previous
        except _READ_ERRORS:
            return 0
