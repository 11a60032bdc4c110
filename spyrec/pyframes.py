"""<=3.10: a thread's frames, heap ``PyFrameObject``s linked by ``f_back`` (a part of StackWalker).

Each frame object costs a read, but a thread's outer frames rarely change between samples, so
the frames that were on the thread's chain last time are fetched in one scatter read
(``FrameChain``), new ones one read each.  A chain may end only where a whole one can
(``f_gen`` / ``co_flags``): one that ends at a generator's frame lost its callers when the
generator yielded during the walk (see spyrec.generatorcallers).

``PyFrameWalk`` is a part of ``StackWalker`` kept in a module of its own: its methods read and
write the walker's tables (``_chains``: each thread's last chain).
"""

from typing import Callable, Dict, List, Optional, Tuple

from spyrec.codeobjects import CodeCache
from spyrec.generatorcallers import GeneratorCallers
from spyrec.layouts.base import Layout
from spyrec.process import MemoryReader
from spyrec.structs import FieldStruct
from spyrec.walkcommon import DEEP, MAX_DEPTH, READ_ERRORS, Walk


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
        span_of: Dict[int, int] = {}
        for addr in sorted(set(chain)):
            if spans and addr - spans[-1][1] <= self.GAP:
                spans[-1][1] = addr + size
            else:
                spans.append([addr, addr + size])
            span_of[addr] = len(spans) - 1
        # Copied in chain order, callees before callers: the pointer to the innermost frame
        # was read first, and the stack changes at that end.
        first: Dict[int, int] = {}
        for i, addr in enumerate(chain):
            first.setdefault(span_of[addr], i)
        order = sorted(range(len(spans)), key=first.__getitem__)
        rank = {span: position for position, span in enumerate(order)}
        self.spans = [(spans[k][0], spans[k][1] - spans[k][0]) for k in order]
        self.where = [(rank[span_of[a]], a - spans[span_of[a]][0]) for a in chain]


class PyFrameWalk:
    """The <=3.10 frame walk of ``StackWalker``."""

    # Set by StackWalker.__init__ (walker.py), of which this class is a part.
    mem: MemoryReader
    read: Callable[[int, int], bytes]
    _verify_innermost: Callable[[int], None]
    layout: Layout
    codes: CodeCache
    callers: GeneratorCallers
    frame_type: Optional[int]
    _frame_size: int
    _chains: Dict[int, FrameChain]
    _next_chains: Dict[int, FrameChain]
    first_frame: int

    def _init_pyframe_walk(self, layout: Layout) -> None:
        fr = layout.frame
        assert fr.gen is not None and fr.executing is not None  # every "pyframe" layout has both
        self._frame = FieldStruct([(layout.ob_type, "Q"), (fr.previous, "Q"), (fr.code, "Q"),
                                   (fr.instr, "i"), (fr.gen, "Q"), (fr.executing, "B")])
        self._running = fr.executing_value
        self._lasti_scale = 2 if layout.instr_kind == "lasti_units" else 1

    def _walk_pyframes(self, addr: int, tstate: int) -> Walk:
        """<=3.10: follow f_back from tstate->frame.

        Frame objects are separate heap objects, so each costs a read.  But a thread's outer
        frames rarely change between samples (and 3.8/3.9 reuse each code object's "zombie"
        frame), so once the walk reaches an address that was on this thread's chain last time,
        the rest of that old chain is fetched in one scatter read and kept as long as every
        ``f_back`` links to the next guessed frame.

        One loop in one function: it is the hot path of every <=3.10 sample, and a call per
        frame would cost more than reading the frame does.
        """
        codes: List[int] = []
        offsets: List[int] = []
        chain: List[int] = []
        read, unpack, size = self.read, self._frame.unpack_from, self._frame_size
        frame_type, scale = self.frame_type, self._lasti_scale
        guess = self._chains.get(tstate)
        torn = False
        spliced: Optional[Tuple[int, ...]] = None
        seen = None  # past DEEP frames, the chain's addresses (see below)
        gen = state = 0
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
            except READ_ERRORS:
                torn = True
                break
            if frame_type and ob_type != frame_type or back == addr:
                torn = True
                break
            # A function's frame found returned since the thread state named it is kept: the
            # thread was in it then, called from the same frames (it keeps its code and links
            # until reused).  Walking again instead would favour the calls that last longest.
            if not codes:
                self._verify_innermost(code)
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
                spliced = self.callers.splice(tstate, chain[-1], codes, offsets, self._pyframe_live)
                torn = spliced is None
                spliced = (len(chain) - 1,) + spliced if spliced else None
            elif chain and state != self._running:
                # The chain ended at a frame not running: one freed (its link to the next
                # free frame, or cleared) or not yet started, reached through a stale link.
                # Only a running frame, the thread's first, ends a whole chain.
                torn = True
            if gens and not torn:
                self.callers.note(tstate, [(chain[i], i) for i in gens], codes, offsets,
                                   chain.__getitem__, spliced)
        # the frame of the coroutine an asyncio task runs, when it is one (see _with_task)
        self.outermost_generator = chain[gens[-1]] if gens else 0
        self.first_frame = chain[-1] if chain and not addr and not torn else 0
        self.outermost_generator_code = codes[gens[-1]] if gens else 0
        old = self._chains.get(tstate)
        if old is not None and old.chain == chain:
            self._next_chains[tstate] = old
        elif chain:
            self._next_chains[tstate] = FrameChain(chain, size)
        return codes, offsets, torn

    def _pyframe_live(self, frame: int, code: int) -> bool:
        """<=3.10: whether the frame object at ``frame`` runs ``code`` now (see _splice).

        A returned frame keeps its code and links, waiting to be reused for the next call of
        its code: only its running state tells."""
        at = self.layout.frame.executing
        assert at is not None  # as _init_pyframe_walk checked
        try:
            data = self.read(frame, max(self._frame_size, at + 1))
        except READ_ERRORS:
            return False
        ob_type, _, found, _, _, _ = self._frame.unpack_from(data)
        return (found == code and data[at] == self.layout.frame.executing_value
                and not (self.frame_type and ob_type != self.frame_type))
