"""Which asyncio task each walked stack ran in: the ``TaskWalk`` part of ``StackWalker``.

A task runs in its coroutine, whose frame lives in (3.11+) or hangs from (<=3.10) the coroutine
object the task keeps; the walk's outermost generator frame is that frame when the thread is
in a task (the event loop's own frames are plain functions).  3.14+ thread states name the task
their loop is stepping (``asyncio_running_task``, see spyrec.asynciotasks); before 3.14 only
``asyncio.tasks._current_tasks`` says which task each loop steps, read as the walker needs it.
"""

from typing import Callable, Dict, List, Optional

from spyrec.codeobjects import CodeCache
from spyrec.generatorcallers import GeneratorCallers
from spyrec.layouts.base import Layout
from spyrec.walkcommon import READ_ERRORS, U64, ThreadStack

#: Tasks whose coroutine frame is kept (an event loop runs a few at a time, of many).
MAX_TASK_FRAMES = 4096
#: Walks of a thread after its task was not known, before which the running tasks are read too.
LEARN_BEFORE_WALKS = 100


class TaskWalk:
    """The asyncio part of ``StackWalker``."""

    # Set by StackWalker (walker.py, chunkwalk.py, pyframes.py), of which this class is a part.
    read: Callable[[int, int], bytes]
    codes: CodeCache
    callers: GeneratorCallers
    outermost_generator: int
    outermost_generator_code: int
    _ts_size: int

    def _init_task_walk(self, layout: Layout) -> None:
        self._tasks_on = False  # whether stacks are given their asyncio task (see read_tasks)
        self._task_at = 0  # asyncio_running_task in the thread state, once known (3.14+)
        self._current_tasks: Optional[Callable[[], List[int]]] = None  # <=3.13
        self._task_coro = self._gen_frame = 0
        self._gen_frame_pointer = False
        #: <=3.13: thread states whose task was not known lately, and for how many more of
        #: their walks the running tasks are read before the walk too (see _with_task).
        self._task_misses: Dict[int, int] = {}
        self._task_frames: Dict[int, int] = {}  # task -> its coroutine's frame
        self._frame_tasks: Dict[int, int] = {}  # and back, for the tasks seen running
        self._learned: Dict[int, int] = {}  # frame -> task, learned around the walk going on
        self._frame_code_at = layout.frame.code
        self._code_untag = ~layout.executable_tag_mask
        self._splices_before = 0
        #: The last _with_task found the stack in a coroutine of no known task while the
        #: thread's loop was stepping one (see _a_task_runs).
        self.task_missed = False

    def _before_walk(self, tstate: int) -> None:
        """Called before each walk of a thread: the tasks stepped now, for a thread whose task
        was not known lately (<=3.13; see _with_task)."""
        self._learned = {}
        if tstate in self._task_misses:
            self._learn_running_tasks()
            self._task_misses[tstate] -= 1
            if not self._task_misses[tstate]:
                del self._task_misses[tstate]

    def _with_task(self, tstate: int, ts: bytes, stack: ThreadStack) -> ThreadStack:
        """``stack`` with the asyncio task it ran in.

        An event loop switches tasks thousands of times a second, so the frames read may be
        another task's than the one the loop named a moment before or after (the loop runs each
        at the same depth).  The frames belong to the task whose coroutine's frame is the
        walk's outermost generator frame (the loop's own frames are plain functions): of the
        tasks the thread state named (3.14+), that one; else the task known to run that
        coroutine.  Before 3.14 tasks become known as they are seen being stepped, read after
        the walk (and, for a while after a thread's task was not known, before its walks too:
        a step shorter than a walk falls between two reads).  A walk completed below a
        generator from an earlier walk read no coroutine frame: see _task_by_code.  (The stack
        itself is whole: walking it again would only move the sample off its moment.)"""
        frame, code = self.outermost_generator, self.outermost_generator_code
        spliced = self.callers.spliced_stacks != self._splices_before
        self.task_missed = False
        if not frame:
            return stack._replace(task=self._task_by_code(ts, stack)) if spliced else stack
        coroutine = self.codes.known_coroutine(code)
        learned = False
        if coroutine is None and self._current_tasks is not None and frame not in self._frame_tasks:
            self._learn_running_tasks()  # before the code is read: reading it takes time
            learned = True
        if not (coroutine or coroutine is None and self.codes.is_coroutine(code)):
            task = self._task_by_code(ts, stack) if spliced else 0
            return stack._replace(task=task) if task else stack
        task = self._named_task(tstate, ts, frame) if self._task_at else 0
        if not task:
            task = self._known_task(frame)
            if not task and self._current_tasks is not None:
                if not learned:
                    self._learn_running_tasks()
                    task = self._known_task(frame)
                if not task:
                    if len(self._task_misses) >= MAX_TASK_FRAMES:
                        self._task_misses.clear()
                    self._task_misses[tstate] = LEARN_BEFORE_WALKS
            if not task:
                self.task_missed = self._a_task_runs(ts)
                return stack
        self._remember_task(frame, task)
        return stack._replace(task=task)

    def _task_by_code(self, ts: bytes, stack: ThreadStack) -> int:
        """The task of a walk completed below a generator from an earlier walk's callers (see
        generatorcallers), which read no coroutine frame: the task the thread state names
        (3.14+) or one the loops are stepping (<=3.13) whose coroutine runs the code of the
        stack's outermost coroutine frame, when just one does."""
        codes = self.codes.codes
        wanted = next((key for key, _ in reversed(stack.frames)
                       if key is not None and key in codes and codes[key].coroutine), None)
        if wanted is None:
            return 0
        if self._task_at:
            candidates = [U64.unpack_from(ts, self._task_at)[0]]
        else:
            candidates = self._running_tasks()
        found = [task for task in candidates if task and self._coroutine_code(task) == wanted]
        return found[0] if len(found) == 1 else 0

    def _coroutine_code(self, task: int) -> Optional[int]:
        """The code key of the coroutine a task runs now, None if it cannot be read."""
        frame = self._coroutine_frame(task, fresh=True)
        if not frame:
            return None
        try:
            code = U64.unpack(self.read(frame + self._frame_code_at, 8))[0] & self._code_untag
        except READ_ERRORS:
            return None
        key = self.codes.verified.get(code)
        return self.codes.keys_for([code])[0] if key is None else key

    def _known_task(self, frame: int) -> int:
        """The task known to run the coroutine whose frame is ``frame``: seen stepping it around
        this walk, or before and still running it (a task that has ended since, its coroutine
        let go, was seen just before the walk)."""
        task = self._learned.get(frame)
        if task:
            return task
        task = self._frame_tasks.get(frame)
        return task if task and self._coroutine_frame(task, fresh=True) == frame else 0

    def _remember_task(self, frame: int, task: int) -> None:
        if len(self._frame_tasks) >= MAX_TASK_FRAMES:
            self._frame_tasks.clear()
        self._frame_tasks[frame] = task

    def _a_task_runs(self, ts: bytes) -> bool:
        """Whether the thread's loop is stepping a task: its thread state names one (3.14+),
        or the loops' running tasks read for this walk are some (<=3.13).  A coroutine driven
        by other means than a task (``send``) has none, whenever it is read."""
        if self._task_at:
            return bool(U64.unpack_from(ts, self._task_at)[0])
        return bool(self._learned)

    def _running_tasks(self) -> List[int]:
        """<=3.13: the tasks the loops are stepping now (none if the read tore)."""
        if self._current_tasks is None:
            return []
        try:
            return self._current_tasks()
        except READ_ERRORS:
            return []

    def _learn_running_tasks(self) -> None:
        """<=3.13: remember the coroutine frame of each task the loops are stepping now."""
        for task in self._running_tasks():
            frame = self._coroutine_frame(task, fresh=True)
            if frame:
                self._remember_task(frame, task)
                self._learned[frame] = task

    def _named_task(self, tstate: int, ts: bytes, frame: int) -> int:
        """3.14+: the task the thread state named, when its copy or a read after the walk
        names the one whose coroutine ``frame`` is; else 0."""
        task = U64.unpack_from(ts, self._task_at)[0]
        if task and self._runs(task, frame):
            return task
        try:
            now = U64.unpack(self.read(tstate + self._task_at, 8))[0]
        except READ_ERRORS:
            return 0
        return now if now and now != task and self._runs(now, frame) else 0

    def _runs(self, task: int, frame: int) -> bool:
        """Whether ``task`` runs the coroutine whose frame is ``frame``: as known, or else read
        again (a task ended and another made at its address since)."""
        return (self._coroutine_frame(task) == frame
                or self._coroutine_frame(task, fresh=True) == frame)

    def _coroutine_frame(self, task: int, fresh: bool = False) -> int:
        """The address of the frame of the coroutine a task runs, 0 if it cannot be read.  It
        lives in (3.11+) or hangs from (<=3.10) the coroutine object, which the task keeps
        while it lives; ``fresh``: read again, for a task that may have ended and another
        taken its place."""
        frame = None if fresh else self._task_frames.get(task)
        if frame is None:
            try:
                coro = U64.unpack(self.read(task + self._task_coro, 8))[0]
                if not coro:
                    frame = 0
                elif self._gen_frame_pointer:
                    frame = U64.unpack(self.read(coro + self._gen_frame, 8))[0]
                else:
                    frame = coro + self._gen_frame
            except READ_ERRORS:
                return 0
            if len(self._task_frames) >= MAX_TASK_FRAMES:
                self._task_frames.clear()
            self._task_frames[task] = frame
        return frame

    def read_tasks(self, task_coro: int, gen_frame: int, gen_frame_pointer: bool = False,
                   running_task: int = 0,
                   current_tasks: Optional[Callable[[], List[int]]] = None) -> None:
        """From now on, give each walked stack the asyncio task it ran in (see _with_task).

        ``task_coro``: the offset of the coroutine in a task; ``gen_frame``: of the frame in a
        coroutine object, or (``gen_frame_pointer``) of the pointer to it.  The running task
        comes from ``running_task``, the offset of ``asyncio_running_task`` in the thread
        state (3.14+: past its PyThreadState part, which is then copied that far), or from
        ``current_tasks``, which reads the tasks the loops are stepping (<=3.13)."""
        self._tasks_on = True
        self._task_coro, self._gen_frame = task_coro, gen_frame
        self._gen_frame_pointer = gen_frame_pointer
        self._current_tasks = current_tasks
        if running_task:
            self._task_at = running_task
            self._ts_size = max(self._ts_size, running_task + 8)

