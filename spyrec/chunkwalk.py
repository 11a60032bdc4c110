"""3.11+: a thread's frames, read from copies of its datastack chunks (a part of StackWalker).

Frames live in per-thread datastack chunks, callers below callees: the used part of the newest
chunk is copied in one read and frames are parsed from that local copy; older chunks are copied
lazily when the chain leads there, and frames outside every chunk (generator / coroutine frames
live in their generator object, 3.12+ entry frames on the C stack) are read directly; on 3.14+
the tag bits of ``f_executable`` (a ``_PyStackRef``) are cleared
(``Layout.executable_tag_mask``).  Frames whose bytes did not change since the thread's last
walk are not parsed again (``ChunkMemo``).

A walk tears on a link up the chunk it came from, an owner out of range or an absurd
instruction offset; a chain that ends at a generator's frame lost its callers when the
generator yielded during the walk (see spyrec.generatorcallers), and so does one whose link from
a generator's frame straight to another frame is not one that frame made by resuming it: read
at another moment, the frame there belongs to another generator (``_sent_from``).  On 3.11/3.12
a walk whose innermost frame does not end where the thread state says the frame chunk does
(``_fits_top``) is taken on 3.11 from the frame that ends there (``_last_in_chunk``), else
from the copy of the C frame's slot made after the chunk, where there is one (spyrec.walker
``_walk_chunks``), and tears where there is not; on 3.11 a function's frame above that top,
innermost, is stepped over: the thread had left it or not yet entered it.  Innermost frames
with no code (they returned between the copies of the thread state and of the chunk: 3.14+
clears a frame's executable as it pops it) are stepped over, not torn.

``ChunkWalk`` is a part of ``StackWalker`` kept in a module of its own: its methods read and
write the walker's tables (``_memos``: each thread's last walk).
"""

import struct
from typing import Callable, Dict, List, Optional, Tuple

from spyrec.codeobjects import CodeCache
from spyrec.errors import MemoryReadError
from spyrec.generatorcallers import GeneratorCallers
from spyrec.layouts.base import FRAME_OWNED_BY_GENERATOR, FRAME_OWNED_BY_THREAD, Layout
from spyrec.process import MemoryReader
from spyrec.structs import FieldStruct
from spyrec.walkcommon import (DEEP, MAX_DEPTH, MAX_THREADS, READ_ERRORS, U64, Copies, Walk,
                                copies_by_address)

MAX_CHUNKS = 1024
#: Frames outside the chunk that a walk done again copies with the thread state.
MAX_PREFETCHED = 64
#: A frame stays in a thread's pool while one of its last POOL_WALKS walks met it.
POOL_WALKS = 4
#: Byte-range comparisons one walk may spend on reusing frames (see ChunkMemo).
MAX_COMPARES = 16
#: Bigger than any datastack chunk CPython allocates for sane code (16 KiB normally).
MAX_CHUNK_BYTES = 64 << 20
#: The top words of a frame's value stack where a frame that resumed a generator inline holds
#: it (see ChunkWalk._sent_from); a stack said to end further than MAX_SENDER_STACK bytes from
#: its frame is garbage.
SENDER_SLOTS = 2
MAX_SENDER_STACK = 1 << 16
#: The bytes copied of a frame outside the chunks from 3.11, to their page's end at most (a
#: page is mapped whole): most generators' and coroutines' frames with their stack.
OUTSIDE_FRAME_BYTES = 256
PAGE = 4096
#: ``int stacktop`` (3.12, 3.13).
I32 = struct.Struct("<i")
#: Instruction offsets outside this range are garbage (not-started 3.11 frames give -2).
MIN_OFFSET, MAX_OFFSET = -16, 1 << 26

#: A copy of a chunk's used part: (its address, the end of the copy, the bytes).
Region = Tuple[int, int, bytes]


class ChunkMemo:
    """A thread's last walk through its newest datastack chunk (3.11+), kept for reuse.

    Between two samples usually only the innermost frames change; the outer ones are
    suspended, and a suspended frame's bytes (header, locals, value stack) do not change.  The
    frames of one chunk are contiguous, callers below callees, so when the chunk's bytes from
    one frame of the last walk up to the end of a higher one's header are what they were, every
    frame of that stretch decodes exactly as it did, links included: their code addresses and
    offsets are taken from the last walk instead of being parsed again, a ``memcmp`` or a few
    instead of a Python loop over the frames (see ``ChunkWalk._reuse``).

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


def chunk_in_use(chunk: int, top: int) -> bool:
    """True when a thread state's datastack chunk and top bound a plausible stretch to copy."""
    return bool(chunk) and chunk < top <= chunk + MAX_CHUNK_BYTES


class ChunkWalk:
    """The 3.11+ frame walk of ``StackWalker``."""

    # Set by StackWalker.__init__ (walker.py), of which this class is a part.
    mem: MemoryReader
    read: Callable[[int, int], bytes]
    _verify_innermost: Callable[[int], None]
    replacing: bool
    callers: GeneratorCallers
    _frame_size: int
    _memos: Dict[int, "ChunkMemo"]
    _next_memos: Dict[int, "ChunkMemo"]
    _pools: Dict[int, Dict[int, int]]
    _pool_walks: Dict[int, int]
    root_chunk: Optional[Region]
    reused_frames: int
    misfit_walks: int

    def _init_chunk_walk(self, layout: Layout, codes: CodeCache) -> None:
        fr, ch = layout.frame, layout.chunk
        assert ch is not None and fr.owner is not None  # every "iframe" layout has both
        self._frame = FieldStruct([(fr.code, "Q"), (fr.previous, "Q"), (fr.instr, "Q"),
                                   (fr.owner, "B")])
        self._chunk = FieldStruct([(ch.previous, "Q"), (ch.size, "Q"), (ch.top, "Q")])
        self._chunk_data = ch.data
        self._adaptive = layout.code.co_code_adaptive
        self._max_owner = layout.max_frame_owner
        self._skip_owner = (layout.skip_owner_from if layout.skip_owner_from is not None
                            else 256)
        #: 3.14+: f_executable, like every value-stack slot, is a tagged _PyStackRef; this
        #: clears the tag bits.
        self._untag = ~layout.executable_tag_mask
        #: 3.11/3.12: code address -> size of its frames in a chunk (see _fits_top).
        self._frame_bytes = codes.frame_bytes if layout.code.frame_words else None
        self._code_bytes = codes.code_bytes
        #: 3.11: where a frame says it is the first of its run of the eval loop (see _fits_top).
        self._is_entry = fr.is_entry
        self._misfit = False  # the last _walk_iframes tore on _fits_top
        #: (len(frame_bytes) when made, its distinct sizes ascending) for _last_in_chunk.
        self._size_set: Tuple[int, List[int]] = (-1, [])
        #: 3.11+: (gi_iframe, stack top field, whether a pointer, localsplus) to check that a
        #: frame a generator's links to directly resumed it (see _sent_from), and the owners of
        #: the frames checked: any Python frame's from 3.12, a generator's on 3.11.
        aw = layout.awaits
        self._sender = (layout.gen_iframe, aw.stack_top, aw.stack_top_is_pointer, aw.localsplus) \
            if aw is not None and layout.gen_iframe is not None else None
        self._senders = frozenset() if self._sender is None else \
            frozenset(range(self._skip_owner)) if self._skip_owner < 256 else \
            frozenset((FRAME_OWNED_BY_GENERATOR,))
        #: Links from a generator's frame to a frame that did not resume it (see _sent_from).
        self.unsent_links = 0

    def _walk_iframes(self, addr: int, chunk: int, top: int, sentinel: int = 0,
                      tstate: int = 0, prefetched: Copies = None, with_state: bool = True,
                      settled: bool = False, fit: bool = True) -> Walk:
        """3.11+: follow ``previous`` through local copies of the datastack chunks, down to
        NULL or (3.15+) the thread's base frame ``sentinel``, which is not read.

        Stretches of frames in the newest chunk whose bytes are unchanged are taken from the
        thread's last walk (see ChunkMemo); the others are parsed one by one.  ``with_state``:
        whether ``addr`` was copied with the thread state (see _cframe_top); ``settled``: and
        its copies on both sides of the thread state agree (see _fits_top); ``fit``: whether
        a walk that does not fit the thread state's top tears (see _fits_top).

        One loop in one function, about 200 lines: it is the hot path of every 3.11+ sample,
        and a call per frame would cost more than parsing the frame does.
        """
        self._misfit = False
        self.outermost_generator = self.outermost_generator_code = 0
        codes: List[int] = []
        offsets: List[int] = []
        outside = []  # frames read outside every chunk copy (generators', C-stack entry frames)
        # (address, index in codes) of the generator frames read outside the chunk
        gens: List[Tuple[int, int]] = []
        if not addr:
            return codes, offsets, False
        regions = []  # (lo, hi, bytes) copies of chunks, newest first
        older = 0
        copy = None  # the newest chunk's copy made with the thread state, room above included
        if chunk_in_use(chunk, top):
            try:
                copy = prefetched.get(chunk) if prefetched else None
                if copy is not None and top - chunk <= len(copy):
                    buf = copy[:top - chunk]  # copied with the thread state
                elif prefetched is None and self._pools.get(tstate):
                    buf, prefetched = self._copy_with_pool(tstate, chunk, top)
                else:
                    buf = self.mem.read(chunk, top - chunk)
                regions.append((chunk, top, buf))
                older = U64.unpack_from(buf)[0]
            except READ_ERRORS:
                pass
        # Frames inside the newest chunk copy: [chunk + header, top - frame size].
        base, hi, buf = regions[0] if regions else (0, 0, b"")
        lo = base + self._chunk_data
        size = self._frame_size
        hi -= size
        unpack, adaptive, untag = self._frame.unpack_from, self._adaptive, self._untag
        max_owner, skip_owner, senders = self._max_owner, self._skip_owner, self._senders
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
        # the last entry frame taken (3.12+), and a generator's frame reached right after one
        last_entry = entry_linked = 0
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
                            if FRAME_OWNED_BY_THREAD in senders and visited == gens[-1][0] \
                                    and not self._sent_from(buf, addr - base, addr, gens[-1][0]):
                                broken = True
                                break
                            consumers[len(codes)] = addr
                            after_gen = False
                        # (``old_addrs`` is empty unless there is a ``memo``)
                        taken, compares, addr, run_ended = self._reuse(
                            memo, at, buf, compares_left, codes, offsets,  # type: ignore[arg-type]
                            chunk_addrs, chunk_starts)
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
                    found: Optional[Region] = last_region
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
                        above_top = copy is not None and chunk <= addr <= chunk + len(copy) - size
                        if data is None and copy is not None and above_top:
                            # above the used part, in the room copied with it (see
                            # walker._outside_range)
                            data = copy[addr - chunk:addr - chunk + size]
                        if data is None:
                            data = self.read(addr, self.outside_span(addr))
                        outside.append(addr)
                        code, previous, instr, owner = unpack(data)
                        if owner == FRAME_OWNED_BY_GENERATOR:
                            gen_at = addr
                        elif above_top and fit and self._is_entry is not None:
                            # 3.11: a function's frame above the datastack top copied with the
                            # thread state was popped before that moment or pushed after it:
                            # innermost, its caller is where the thread was then
                            if codes:
                                self._misfit = True
                                self.misfit_walks += 1
                                return codes, offsets, True
                            addr = previous
                            continue
                    else:
                        last_region = found
                        code, previous, instr, owner = unpack(found[2], addr - found[0])
                except READ_ERRORS:
                    broken = True
                    break
            if owner > max_owner or previous == addr:
                broken = True
                break
            if after_gen and owner in senders and visited == gens[-1][0]:
                if lo <= addr <= hi:
                    src, at_src = buf, addr - base
                elif found is None:
                    src, at_src = data or b"", 0  # (read above: never None here)
                else:
                    src, at_src = found[2], addr - found[0]
                if not self._sent_from(src, at_src, addr, gens[-1][0], code):
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
                if not codes:
                    self._verify_innermost(code)
                add_code(code)
                add_offset(offset)
                if gen_at:
                    if last_entry and visited == last_entry:
                        entry_linked = gen_at
                    gens.append((gen_at, len(codes) - 1))
                    gen_at = 0
                    after_gen = True
                elif after_gen:
                    consumers[len(codes) - 1] = addr
                    after_gen = False
            else:
                last_entry = addr
            visited = addr
            addr = previous
        # the frame of the coroutine an asyncio task runs, when it is one (see _with_task)
        if gens:
            self.outermost_generator, at = gens[-1]
            self.outermost_generator_code = codes[at]
        if fit and chunk_addrs and not self._fits_top(chunk_addrs[0], codes, chunk_starts[0],
                                                     top, buf, base, (chunk_addrs[0], link),
                                                     settled):
            self._misfit = True
            self.misfit_walks += 1
            return codes, offsets, True
        spliced = None
        if broken or not addr and not self._ends_at(owner, sentinel):
            # Cut right below a generator's frame: its link was cleared (NULL) or is stale (on
            # 3.12+ it led to the entry frame on the C stack of the run that resumed it).
            if gens and gens[-1][0] == entry_linked and len(gens) > 1 \
                    and gens[-2][1] == len(codes) - 2 and gens[-1][1] == len(codes) - 1:
                # 3.12+: that generator was reached from the one before through an entry
                # frame, a link nothing can check (see _sent_from): read later, the entry
                # frame may serve another run, its link to a frame whose generator has
                # another in its place.  The callers are those of the generator before.
                del codes[-1], offsets[-1], gens[-1]
                broken = True
            if (broken or owner == FRAME_OWNED_BY_GENERATOR) and gens \
                    and gens[-1][1] == len(codes) - 1:
                spliced = self._splice_below(tstate, gens[-1], codes, offsets, regions,
                                             None if chunk_addrs else (lo, hi), top, buf, base,
                                             settled)
            if not spliced:
                self._remember_outside(tstate, outside)
                return codes, offsets, True
            addr = sentinel
        if gens:
            self.callers.note(tstate, gens, codes, offsets, consumers.get, spliced)
        if outside or tstate in self._pools:
            self._remember_outside(tstate, outside)
        if in_run:
            runs.append((len(chunk_addrs), len(codes), addr))
        if regions:
            self._next_memos[tstate] = ChunkMemo(base, buf, chunk_addrs, chunk_starts, runs,
                                                 codes, offsets)
            if not older:  # the last chunk copied is the first one: no chunk before it
                self.root_chunk = regions[-1]
        return codes, offsets, False

    def _copy_with_pool(self, tstate: int, chunk: int, top: int) -> Tuple[bytes, Copies]:
        """(the newest chunk's used part, {address: copy} of the thread's pool) in one batched
        read, the chunk first: a walk that read the thread state alone (3.13+) takes the frames
        outside the chunk it meets as of the chunk's moment, not each at a later one of its
        own (a generator's frame resumed meanwhile; a module body's ``exec`` entry frame on the
        C stack, left and its slot reused: the walk tore, and was done again later)."""
        ranges = [(chunk, top - chunk)] + [(addr, self.outside_span(addr))
                                           for addr in reversed(self._pools[tstate])
                                           if not chunk <= addr < top]
        copies = self.mem.read_many(ranges)
        if copies[0] is None:
            raise MemoryReadError("chunk 0x%x unreadable" % chunk)
        return copies[0], copies_by_address(ranges[1:], copies[1:])

    def outside_span(self, frame: int) -> int:
        """The bytes to copy of a frame outside the chunks: its fields, and from 3.11 as much
        of its locals and value stack as lie within OUTSIDE_FRAME_BYTES and its page (see
        _sent_from), so that the link and the stack are of one moment."""
        if self._sender is None:
            return self._frame_size
        return max(self._frame_size, min(OUTSIDE_FRAME_BYTES, PAGE - frame % PAGE))

    def _sent_from(self, src: bytes, at: int, frame: int, gen_frame: int, code: int = 0) -> bool:
        """Whether the frame at ``frame`` (its bytes from ``src[at:]``, running ``code``: read
        on 3.11) resumed the generator whose frame is ``gen_frame``, which links to it directly.

        From 3.12 a generator's frame links straight to a Python frame only when that frame
        resumed it inline (SEND, SEND_GEN, FOR_ITER_GEN in Python/bytecodes.c, 3.12-3.15),
        which saves its stack pointer with the generator on top (3.14+ FOR_ITER keeps an index
        above it); resumed from C, it links to an entry frame.  3.11 resumes every generator
        from C (SEND calls PyIter_Send, Python/ceval.c), its caller's stack pointer unsaved: a
        generator's frame that links to another generator's is checked to be held in that
        frame's locals or stack (an ``await``, ``yield from``, ``for`` or call keeps it there).

        A chain read from a running thread meets links that another moment made: a
        coroutine's frame read just before it ended, linking to a frame whose generator was
        freed since and whose memory now holds another one (a coroutine's frame in the place
        of the async generator it was awaited by).
        """
        gen_at, top_at, is_pointer, localsplus = self._sender  # type: ignore[misc]
        gen = gen_frame - gen_at
        try:
            if self._is_entry is not None:
                start = localsplus
                end = (self._frame_bytes or {}).get(code, 0) or OUTSIDE_FRAME_BYTES
            else:
                field = U64 if is_pointer else I32
                if at + top_at + field.size <= len(src):
                    top = field.unpack_from(src, at + top_at)[0]
                else:
                    top = field.unpack(self.read(frame + top_at, field.size))[0]
                end = top - frame if is_pointer else localsplus + 8 * top
                start = max(localsplus, end - 8 * SENDER_SLOTS)
            if not localsplus < end <= MAX_SENDER_STACK:
                return False
            if at + end <= len(src):
                words = src[at + start:at + end]
            else:
                words = self.read(frame + start, end - start)
        except READ_ERRORS:
            return False
        untag = self._untag
        for (word,) in U64.iter_unpack(words[:len(words) & ~7]):
            if word & untag == gen:
                return True
        self.unsent_links += 1
        return False

    def _splice_below(self, tstate: int, generator: Tuple[int, int], codes: List[int],
                      offsets: List[int], regions: List[Region],
                      newest: Optional[Tuple[int, int]], top: int, buf: bytes, base: int,
                      settled: bool) -> Optional[Tuple[int, int, int]]:
        """(its index, consumer length, consumer address) of the innermost-last generator frame
        (``generator``: its address and index) whose callers a walk that ended at it got back
        from an earlier walk (see GeneratorCallers.splice); None when it got none, or their
        consumer, in the ``newest`` chunk's frame range (lo, hi) when the walk took no frame
        there, is not where the thread state says the thread's frames end."""
        unpack, untag = self._frame.unpack_from, self._untag

        def live(frame: int, code: int) -> bool:
            """A frame of the thread (not a generator's) running ``code`` now."""
            region = self._find_region(regions, frame)
            if region is None:
                return False
            found, _, _, found_owner = unpack(region[2], frame - region[0])
            return found_owner == FRAME_OWNED_BY_THREAD and found & untag == code

        spliced = self.callers.splice(tstate, generator[0], codes, offsets, live)
        if not spliced:
            return None
        below, consumer = spliced
        if newest is not None and newest[0] <= consumer <= newest[1] and \
                not self._fits_top(consumer, codes, len(codes) - below, top, buf, base,
                                   (consumer,), settled):
            # The consumer the callers were taken from is not where the thread state says the
            # thread's frames end: the generator yielded, or its callee returned, between the
            # copies.
            self._misfit = True
            self.misfit_walks += 1
            return None
        return (generator[1],) + spliced

    def _last_in_chunk(self, chunk: int, top: int, prefetched: Copies = None,
                       started: bool = False) -> int:
        """3.11/3.12: the frame that ends where the thread state says the chunk's used part
        does (see _fits_top), found from the sizes of the code objects seen so far in the
        chunk's copy made with the thread state; 0 when none does, or there is no such copy,
        or (``started``) it is not past its first instruction and within its code: a frame
        being pushed, its fields and link not all set yet (3.11 CALL in Python/ceval.c links it
        after initialising its locals), or a generator's, which runs only RETURN_GENERATOR on
        the chunk."""
        sizes = self._frame_bytes
        copy = prefetched.get(chunk) if prefetched else None
        if not sizes or copy is None or not chunk_in_use(chunk, top) or top - chunk > len(copy):
            return 0
        buf = copy[:top - chunk]
        if self._size_set[0] != len(sizes):
            self._size_set = (len(sizes), sorted(set(sizes.values())))
        lowest = self._chunk_data
        for size in self._size_set[1]:
            at = len(buf) - size
            if at < lowest:
                break
            code, _, instr, owner = self._frame.unpack_from(buf, at)
            code &= self._untag
            if owner == FRAME_OWNED_BY_THREAD and sizes.get(code) == size:
                offset = instr - code - self._adaptive
                if started and not 0 < offset < self._code_bytes.get(code, 0):
                    return 0
                return chunk + at
        return 0

    def _fits_top(self, frame: int, codes: List[int], at: int, top: int, buf: bytes = b"",
                  base: int = 0, links: Tuple[int, ...] = (), settled: bool = False) -> bool:
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
        if self._is_entry is not None and not buf[above + self._is_entry]:
            # 3.11 names a frame called from Python as it pushes it and pops one returning to
            # Python before it names the caller (CALL and RETURN_VALUE, Python/ceval.c): only
            # a frame that C code called, cleared after its run returned, lingers above the
            # frame its caller's run names.  Above it a called frame means a stale copy.
            return False
        above_size = sizes.get(code & self._untag)
        return owner == FRAME_OWNED_BY_THREAD and previous in links and \
            above_size is not None and frame + size + above_size == top

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
        if not codes and self.replacing and upto > first:
            # (bytes as the last walk found them may be a new frame running a new code object
            # made where the last one was: see CodeCache.replacing)
            self._verify_innermost(memo.codes[first])
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

    def _find_region(self, regions: List[Region], addr: int) -> Optional[Region]:
        data, size = self._chunk_data, self._frame_size
        for region in regions:
            if region[0] + data <= addr <= region[1] - size:
                return region
        return None

    def _copy_chunk(self, chunk: int, regions: List[Region]) -> int:
        """Copy the used part of an older chunk (its ``top`` counts slots); return its previous."""
        try:
            previous, size, top = self._chunk.unpack_from(self.read(chunk, self._chunk.size))
            used = self._chunk_data + 8 * top
            if not 0 < used <= min(size, MAX_CHUNK_BYTES):
                return 0
            regions.append((chunk, chunk + used, self.mem.read(chunk, used)))
            return previous
        except READ_ERRORS:
            return 0

    def _remember_outside(self, tstate: int, outside: List[int]) -> None:
        """Add a walk's frames outside the chunk to the thread's pool (see _walk_again), and
        drop those its last POOL_WALKS walks did not meet.

        A chain of generators is rebuilt for every item it yields, from a few generator
        objects whose frames keep their addresses, so a small pool covers them.  The pool is
        copied with every walk, each frame a range of its own: a thread that went through many
        generators (a web request rendering templates) would otherwise keep copying dozens of
        frames long gone from its stack.
        """
        pool = self._pools.get(tstate)
        if pool is None:
            if len(self._pools) >= MAX_THREADS:
                self._pools.clear()
                self._pool_walks.clear()
            pool = self._pools[tstate] = {}
        walk = self._pool_walks[tstate] = self._pool_walks.get(tstate, 0) + 1
        for addr in reversed(outside):
            pool.pop(addr, None)
            pool[addr] = walk
        stale = walk - POOL_WALKS
        while pool:  # (the least recently met first)
            oldest = next(iter(pool))
            if pool[oldest] > stale and len(pool) <= MAX_PREFETCHED:
                break
            del pool[oldest]
