"""The callers of a thread's generator frames, remembered from its whole walks.

A generator that yields clears its frame's link to its caller, so a walk of a running target
that reads the generator's frame just after it yielded ends there, its callers lost.  A
generator is resumed from where it was suspended, so the callers a recent whole walk found
below it complete such a walk (``splice``), when the frame they hang from still runs there.
Both frame walks (<=3.10 frame objects, 3.11+ datastack chunks) use this.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

from spyrec.walkcommon import MAX_THREADS

#: Generator frames whose callers a thread keeps, and for how long (seconds).
MAX_CALLERS = 512
CALLERS_TTL = 10.0
#: Distinct callers kept per generator code, latest first.
TAILS_PER_CODE = 32


class GeneratorCallers:
    """Per thread state: its generator frames' callers, as its whole walks found them."""

    def __init__(self, is_generator: Callable[[int], bool]):
        #: Whether a code object (by address) is a generator's: a consumer never is.
        self.is_generator = is_generator
        #: tstate -> {(generator frame address, its code): (its callers' codes and offsets,
        #: when seen, how many of those are its consumer and below, the consumer's address),
        #: its code: [such entries, latest first], and (its code, its callee's code or 0 when
        #: innermost): its offset then}.
        self._by_thread: Dict[int, Dict[Any, Any]] = {}
        #: The time of the walk going on (monotonic seconds), set by the walker.
        self.now = 0.0
        #: Walks completed below a suspended generator from a recent whole walk.
        self.spliced_stacks = 0

    def where_it_ran(self, tstate: int, codes: List[int], offsets: List[int]) -> None:
        """Set the offset of the last generator frame in ``codes``, read after it yielded.

        It was then at its ``yield``, where it spends next to no time; when the thread state
        was read it was running its callee, so where it calls that, or (found innermost) its
        own code, so where it last did so, as its whole walks saw it (see note)."""
        callers = self._by_thread.get(tstate)
        if callers:
            callee = codes[-2] if len(codes) > 1 else 0
            offsets[-1] = callers.get((codes[-1], callee), offsets[-1])

    def note(self, tstate: int, gens, codes: List[int], offsets: List[int], address_of,
             spliced=None) -> None:
        """Remember, for each generator frame of a whole walk, the frames that called it.

        ``gens`` holds (frame address, its index in ``codes``); ``address_of(index)`` gives
        the address of the frame at an index that follows a generator's (None if unknown);
        ``spliced`` (index, consumer length, consumer address) names a generator frame whose
        callers ``splice`` appended: it is not remembered again, but its consumer is that of
        the generators it called.
        """
        callers = self._by_thread.get(tstate)
        if callers is None:
            if len(self._by_thread) >= MAX_THREADS:
                self._by_thread.clear()
            callers = self._by_thread[tstate] = {}
        elif len(callers) >= MAX_CALLERS:
            callers.clear()
        now = self.now
        # The consumer of a run of adjacent generators is the frame after its outermost one.
        outer, below, consumer = spliced if spliced else (-1, 0, None)
        for addr, i in reversed(gens):
            if i == outer:
                continue
            if outer != i + 1:
                below, consumer = len(codes) - (i + 1), address_of(i + 1)
                if consumer is not None and below and self.is_generator(codes[i + 1]):
                    # A generator's frame read after it finished (or before its generator
                    # was made) passes for a plain caller; its address soon serves another
                    # generator of that code, anywhere in the program, which would pass
                    # splice's liveness check for this walk's callers.
                    consumer = None
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

    def splice(self, tstate: int, addr: int, codes: List[int], offsets: List[int],
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
        callers = self._by_thread.get(tstate)
        if not callers:
            return None
        code = codes[-1]
        known = callers.get((addr, code))
        checked = set()
        for tail, tail_offsets, seen, below, consumer in \
                ([known] if known else []) + callers.get(code, []):
            if self.now - seen > CALLERS_TTL or (consumer, tail[-below]) in checked:
                continue
            if (known is None or tail is not known[0]) and code in tail[:len(tail) - below]:
                # A generator that delegates to another of its own code (a recursive ``yield
                # from``): a tail found below another object of that code may belong to any
                # level of the recursion, and would add or drop levels.
                continue
            checked.add((consumer, tail[-below]))
            if live(consumer, tail[-below]):
                self.where_it_ran(tstate, codes, offsets)
                codes.extend(tail)
                offsets.extend(tail_offsets)
                self.spliced_stacks += 1
                return below, consumer
        return None
