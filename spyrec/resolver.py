"""From what the walker read to the ids a sink defines: the one way from a raw stack to its id.

The walker reports a thread's stack as raw frames, ``(code_key, instr_offset)`` pairs, leaf
first.  A stack seen before costs one dict lookup; a new one has its code objects verified
again (a code object freed and replaced at the same address shows up first in a new stack:
see ``CodeCache.refresh``), each frame described once (file, names, exact line), and frames and
stacks defined through the sink, once each (``spyformat.Interner``).

Every table here is bounded: past its limit it is forgotten and what comes again is defined
again under fresh ids, so the recorder's memory stays bounded however long it runs and however
many distinct stacks the target makes (a raw stack of 30 frames takes about 2 KB).
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

from spyformat import GC_FRAME, KERNEL_FILE, TASK_FILE, FrameKind, Interner
from spyrec.codeobjects import GONE, SKIP, CodeCache
from spyrec.errors import MemoryReadError, PermissionDenied
from spyrec.nativestacks import awaits_lines
from spyrec.sinks import Sink

#: Raw stacks kept with their stack ids.
RAW_STACK_LIMIT = 10_000
#: Raw frames kept with their frame ids.
RAW_FRAME_LIMIT = 50_000
#: Strings, frames and stacks kept with their ids, each.
DEFINED_LIMIT = 50_000
#: Stacks kept until their native frames' lines are decoded (see ``settle``).
PENDING_LIMIT = 10_000


#: A walker frame: (code key, instruction offset).
RawFrame = Tuple[int, int]
#: Native frames placed among a stack's Python frames (see spyrec.nativestacks.place).
Placed = Tuple[Tuple[int, Tuple[Any, ...]], ...]



class StackResolver:
    """Stack ids for walker stacks, defined through ``sink`` (see spyrec.sinks)."""

    def __init__(self, codes: CodeCache, sink: Sink,
                 lines_now: Optional[Callable[[Any], Optional[Tuple[Any, ...]]]] = None):
        """``lines_now``: a native frame defined without the line its unit's table will give
        (``NativeFrame.pending``) as it is once that is decoded, or None before (see
        ``settle``; spyrec.nativestacks.NativeStacks.lines_now)."""
        self.codes = codes
        self.sink = sink
        self.interned = Interner(sink, DEFINED_LIMIT)
        #: raw frames, or (raw frames, in GC, kernel frames) for a stack with either -> stack id
        self._raw_stacks: Dict[Any, int] = {}
        self._raw_frames: Dict[RawFrame, int] = {}
        amends = getattr(sink, "amend_stack", None) is not None
        self._lines_now = lines_now if amends else None
        #: stack id -> what it was made of, for the stacks with native frames awaiting their
        #: lines, while the sink may still amend them
        self._pending: Dict[int, Tuple[Any, ...]] = {}

    @property
    def has_pending(self) -> bool:
        """Whether stacks await their native frames' lines (see ``settle``)."""
        return bool(self._pending)

    def settle(self) -> None:
        """Give the stacks defined with native frames whose lines were not decoded yet (the
        line helper decodes a unit the first time a recording meets it: see
        spyrec.nativelines) those lines, and the functions inlined there, where they are
        decoded now and the stack is not written yet; a stack written meanwhile keeps its
        frames without lines."""
        written = self.sink.written_stacks  # type: ignore[attr-defined]
        for stack_id, (current, in_gc, kernel, task, native) in list(self._pending.items()):
            if stack_id >= written:
                lined = self._lined(native)
                if lined is None:
                    continue  # (not decoded yet)
                frame_ids = self._native_frame_ids(current, task, lined)
                if frame_ids is not None:
                    self.sink.amend_stack(  # type: ignore[attr-defined]
                        stack_id, self._marked(frame_ids, in_gc, kernel))
            del self._pending[stack_id]

    def _lined(self, native: Placed) -> Optional[Placed]:
        """``native`` with each frame awaiting its line as it is now, or None while one's
        unit is not decoded yet."""
        lines_now = self._lines_now
        assert lines_now is not None
        lined = []
        for position, frames in native:
            found: List[Any] = []
            for frame in frames:
                now = lines_now(frame) if frame.pending else (frame,)
                if now is None:
                    return None
                found.extend(now)
            lined.append((position, tuple(found)))
        return tuple(lined)

    def string_id(self, text: str) -> int:
        return self.interned.string_id(text)

    def empty_stack_id(self) -> int:
        """The stack of a thread with no Python frames, or of one whose walk tore."""
        return self.interned.stack_id(())

    def stack_id(self, raw_frames: Tuple[RawFrame, ...], in_gc: bool = False,
                 kernel: Tuple[str, ...] = (), task: Optional[str] = None,
                 native: Optional[Placed] = None, verified: bool = False) -> Optional[int]:
        """The stack id of a walker stack (leaf first), or None when a frame cannot be read;
        innermost under its Python frames, ``in_gc``: the ``GC_FRAME``, ``kernel``: kernel
        functions (innermost first); ``task``: the asyncio task it ran in, a ``TASK_FILE``
        frame named after it just outside the task's coroutine (the outermost coroutine
        frame: the event loop's frames are plain functions), or outermost without one;
        ``native``: native frames among the Python frames (spyrec.nativestacks.place);
        ``verified``: the walk verified every code object as it read the frames
        (ThreadStack.verified), so the keys are not verified again (see ``_refreshed``)."""
        if native is not None:
            return self._native_stack_id(raw_frames, in_gc, kernel, task, native, verified)
        extra = in_gc or kernel or task is not None
        stack_id = self._raw_stacks.get((raw_frames, in_gc, kernel, task) if extra else raw_frames)
        if stack_id is not None:
            return stack_id
        current = self._verified(raw_frames, verified)
        if current is None:
            return None
        key = (current, in_gc, kernel, task) if extra else current
        stack_id = self._raw_stacks.get(key)
        if stack_id is None:
            frame_ids: List[int] = []
            task_at = self._task_position(current) if task is not None else -1
            for position, raw in enumerate(reversed(current)):
                if position == task_at and task is not None:
                    frame_ids.append(self.interned.frame_id(TASK_FILE, task, task, 0))
                frame_id = self._frame_id(raw)
                if frame_id is None:
                    return None
                frame_ids.append(frame_id)
            stack_id = self._defined(frame_ids, in_gc, kernel)
            self._remember(key, stack_id)
        if current != raw_frames:
            self._remember((raw_frames, in_gc, kernel, task) if extra else raw_frames, stack_id)
        return stack_id

    def _native_stack_id(self, raw_frames: Tuple[RawFrame, ...], in_gc: bool,
                         kernel: Tuple[str, ...], task: Optional[str],
                         native: Placed, verified: bool) -> Optional[int]:
        """``stack_id`` of a stack with native frames: every Python frame keeps its place
        among them, so frames of the interpreter's own code are left out one by one."""
        key = (raw_frames, in_gc, kernel, task, native)
        stack_id = self._raw_stacks.get(key)
        if stack_id is not None:
            return stack_id
        current = self._refreshed(raw_frames, verified)
        if current is None:
            return None
        frame_ids = self._native_frame_ids(current, task, native)
        if frame_ids is None:
            return None
        if self._lines_now is not None and len(self._pending) < PENDING_LIMIT \
                and awaits_lines(native):
            # A stack of its own, not one of equal frames: its lines are of its addresses.
            stack_id = self.sink.define_stack(self._marked(frame_ids, in_gc, kernel))
            self._pending[stack_id] = (current, in_gc, kernel, task, native)
        else:
            stack_id = self._defined(frame_ids, in_gc, kernel)
        self._remember(key, stack_id)
        return stack_id

    def _native_frame_ids(self, current: Tuple[RawFrame, ...], task: Optional[str],
                          native: Placed) -> Optional[List[int]]:
        """The frame ids, root first, of Python frames ``current`` (leaf first) with the
        native frames ``native`` placed among them; None when a frame cannot be read."""
        inside = dict(native)  # Python frame p -> the native frames just inside it
        count = len(current)
        task_at = self._task_position(current) if task is not None else -1
        frame_ids: List[int] = []
        for position in range(count, -1, -1):  # outermost first
            for frame in reversed(inside.get(position, ())):
                frame_ids.append(self.interned.frame_id(frame.file, frame.name, frame.name,
                                                        frame.line, -1, FrameKind.NATIVE,
                                                        frame.source))
            if position == 0:
                break
            raw = current[position - 1]
            if count - position == task_at and task is not None:
                frame_ids.append(self.interned.frame_id(TASK_FILE, task, task, 0))
            if raw[0] == SKIP:
                continue
            frame_id = self._frame_id(raw)
            if frame_id is None:
                return None
            frame_ids.append(frame_id)
        return frame_ids

    def _defined(self, frame_ids: List[int], in_gc: bool, kernel: Tuple[str, ...]) -> int:
        """The id of the stack of ``frame_ids`` (root first), with the collector's mark and
        the kernel frames innermost."""
        return self.interned.stack_id(self._marked(frame_ids, in_gc, kernel))

    def _marked(self, frame_ids: List[int], in_gc: bool, kernel: Tuple[str, ...]
                ) -> Tuple[int, ...]:
        """``frame_ids`` with the collector's mark and the kernel frames innermost."""
        if in_gc:
            frame_ids.append(self.interned.frame_id(GC_FRAME, GC_FRAME, GC_FRAME, 0))
        for function in reversed(kernel):
            frame_ids.append(self.interned.frame_id(KERNEL_FILE, function, function, 0, -1,
                                                    FrameKind.KERNEL))
        return tuple(frame_ids)

    def _task_position(self, frames: Tuple[RawFrame, ...]) -> int:
        """Where a task's frame goes among ``frames`` (leaf first), counted from the root:
        before the outermost coroutine (generator-like) frame, else first."""
        codes = self.codes.codes
        for position, (key, _) in enumerate(reversed(frames)):
            code = codes.get(key)
            if code is not None and code.generator:
                return position
        return 0

    def _verified(self, raw_frames: Tuple[RawFrame, ...],
                  verified: bool = False) -> Optional[Tuple[RawFrame, ...]]:
        """``raw_frames`` with every code object verified now and its current key (frames of
        interpreter-internal code left out), or None when one is no longer a code object;
        ``verified``: as the walk verified them."""
        current = self._refreshed(raw_frames, verified)
        if current is None:
            return None
        return tuple(frame for frame in current if frame[0] != SKIP)

    def _refreshed(self, raw_frames: Tuple[RawFrame, ...],
                   verified: bool = False) -> Optional[Tuple[RawFrame, ...]]:
        """``raw_frames`` with every code object verified now and its current key (``SKIP``
        for interpreter-internal code), or None when one is no longer a code object.

        ``raw_frames`` as they are when the walk verified its code objects as it read them
        (``verified``, while code objects are replaced: CodeCache.replacing): verified again
        now, one replaced since would be named after its successor."""
        if verified:
            return raw_frames
        try:
            keys = self.codes.refresh([key for key, _ in raw_frames])
        except (MemoryReadError, PermissionDenied):
            return None
        if any(key is None for key in keys):
            # A code object the walk verified and that is gone since (a module's body is
            # freed once it has run: an import-heavy program frees one every millisecond or
            # two) is still what the walk found; a code object replaced meanwhile has a key.
            known = self.codes.codes
            keys = [key if key is not None else old if old in known or old == GONE else None
                    for key, (old, _) in zip(keys, raw_frames)]
            if any(key is None for key in keys):
                return None
        return tuple((key, offset)  # type: ignore[misc]  # (no None among the keys by now)
                     for key, (_, offset) in zip(keys, raw_frames))

    def _frame_id(self, raw: RawFrame) -> Optional[int]:
        frame_id = self._raw_frames.get(raw)
        if frame_id is None:
            try:
                info = self.codes.describe(*raw)
            except MemoryReadError:
                return None
            frame_id = self.interned.frame_id(info.filename, info.name, info.qualname, info.line,
                                              info.column)
            if len(self._raw_frames) >= RAW_FRAME_LIMIT:
                self._raw_frames.clear()
            self._raw_frames[raw] = frame_id
        return frame_id

    def _remember(self, raw_frames: Any, stack_id: int) -> None:
        if len(self._raw_stacks) >= RAW_STACK_LIMIT:
            self._raw_stacks.clear()
        self._raw_stacks[raw_frames] = stack_id
