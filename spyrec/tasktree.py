"""Every asyncio task of a process and what each awaits: ``spyrec where --tasks``.

What ``python -m asyncio pstree`` shows for 3.14, read from outside on 3.8 to 3.15, nothing
stopped: each task's name, the coroutines it is suspended in (its own, then the one that awaits,
and so on: ``_PyGen_yf``, Objects/genobject.c), the future it waits for, and which tasks await
it.  For a program that hangs, this is what it waits for, and a cycle of tasks awaiting each
other shows as one.

Where the tasks are found:

- 3.14+: each thread state heads a list of the tasks created in it, and the interpreter state one
  of the tasks left by threads that ended (``asyncio_tasks_head``, each task linked in by its
  ``task_node``); a task's awaiters are in ``task_awaited_by`` (one task, or a set of them).
  Offsets from ``_asyncio``'s ``.AsyncioDebug`` table (spyrec.asynciotasks).
- 3.8-3.13: ``asyncio.tasks._all_tasks`` (3.8-3.11) or ``_scheduled_tasks`` (3.12, 3.13), WeakSets of
  the tasks not yet done, and ``_eager_tasks`` (3.12, 3.13), a set of the eager tasks in their
  first step (Modules/_asynciomodule.c, Lib/asyncio/tasks.py).  Who awaits whom comes from each
  task's ``_fut_waiter``: a task, or the future of a ``gather`` whose ``_children`` are tasks;
  and a task waiting at the end of an ``async with TaskGroup()`` awaits the group's ``_tasks``
  (the group is ``self`` of its ``__aexit__``, Lib/asyncio/taskgroups.py 3.11-3.13).

The target runs on while this reads it, so a task may end or move on mid-read: what cannot be
read is left out, never guessed, and every walk is bounded.
"""

import struct
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from spyrec.asynciotasks import AsyncioOffsets, CurrentTasks, TaskNames
from spyrec.codeobjects import CodeCache, FrameInfo
from spyrec.errors import MemoryReadError
from spyrec.layouts.base import AwaitOffsets, Layout
from spyrec.process import MemoryReader
from spyrec.threadnames import ThreadNameReader

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
#: TaskObj keeps ``task_fut_waiter`` just before ``task_coro`` (Modules/_asynciomodule.c 3.8-3.15).
FUT_WAITER_BEFORE_CORO = 8
#: PySetObject's ``used``, ``mask`` and ``table``; a setentry is (key, hash), and a deleted
#: entry's hash is -1 (Include/cpython/setobject.h, Objects/setobject.c 3.8-3.15).
SET_USED, SET_MASK, SET_TABLE, SET_ENTRY = 24, 32, 40, 16
#: PyWeakReference.wr_object, PyListObject's ob_size and ob_item, PyTypeObject.tp_name (3.8-3.15).
WR_OBJECT, LIST_SIZE, LIST_ITEMS, TP_NAME = 16, 16, 24, 24
#: llist_node: next, then prev (Include/internal/pycore_llist.h 3.14+).
NODE_NEXT = 0
#: Where a task waits for its TaskGroup's tasks (3.11-3.13; 3.14+ link them as awaiters).
TASK_GROUP_EXITS = ("TaskGroup.__aexit__", "TaskGroup._aexit")
#: Bounds on what the target's memory may claim: tasks in all, coroutines awaiting one another,
#: entries of a set, children of a gather, bytes of a type's name.
MAX_TASKS = 1 << 16
MAX_CHAIN = 256
MAX_SET = 1 << 20
MAX_CHILDREN = 1 << 16
MAX_TYPE_NAME = 128


@dataclass
class TaskReport:
    address: int
    name: Optional[str]
    #: Its coroutines, innermost first: the task's own coroutine last.
    frames: List[FrameInfo]
    #: What it waits for: ``Task "name"``, or the type of the future (``_asyncio.Future``,
    #: ``_GatheringFuture``); None when running or not waiting on a future.
    awaits: Optional[str] = None
    awaited_by: List[int] = field(default_factory=list)  # addresses of the tasks awaiting it
    thread: Optional[int] = None  # TID of the thread it was created in (3.14+), or runs in
    running: bool = False  # its event loop was stepping it


class TaskTree:
    """Reads every task of one interpreter once (see the module docstring)."""

    def __init__(self, mem: MemoryReader, layout: Layout, codes: CodeCache,
                 names: ThreadNameReader, task_names: TaskNames, offsets: AsyncioOffsets,
                 coroutine_types: Iterable[Optional[int]]):
        if layout.awaits is None or (layout.gen_iframe or layout.gen_frame_pointer) is None:
            raise ValueError("layout %s does not say what a coroutine awaits" % layout.name)
        self.mem = mem
        self.layout = layout
        self.awaits: AwaitOffsets = layout.awaits
        self.codes = codes
        self.names = names
        self.u64 = names.u64  # a pointer (or any u64) of the target's, one read
        self.task_names = task_names
        self.offsets = offsets
        #: PyCoro_Type and PyGen_Type: the objects whose frames an await chain goes through.
        self.coroutine_types = {t for t in coroutine_types if t}
        self._untag = ~layout.executable_tag_mask
        #: Where a coroutine holds its frame (3.11+) or points to its frame object (<=3.10).
        self._gen_iframe = layout.gen_iframe or 0
        self._frame_pointer = layout.gen_frame_pointer if layout.gen_iframe is None else None
        self._lasti_scale = 2 if layout.instr_kind == "lasti_units" else 1
        self._type_names: Dict[int, Optional[str]] = {}
        #: task -> (address, FrameInfo) of its innermost coroutine's frame, as last read
        self._innermost: Dict[int, Tuple[int, FrameInfo]] = {}
        self._last_frame = 0  # of the last coroutine _step read

    # -- finding the tasks ----------------------------------------------------------------

    def from_lists(self, heads: Iterable[Tuple[int, Optional[int]]]) -> Dict[int, Optional[int]]:
        """3.14+: task address -> TID, from (list head address, TID or None) pairs."""
        found: Dict[int, Optional[int]] = {}
        node_at = self.offsets.task_node
        for head, tid in heads:
            try:
                node = self.u64(head + NODE_NEXT)
                while node != head and node and len(found) < MAX_TASKS:
                    found.setdefault(node - node_at, tid)
                    node = self.u64(node + NODE_NEXT)
            except MemoryReadError:
                continue  # a list that changed under the read: the tasks read so far stay
        return found

    def from_module(self, interp: int) -> Dict[int, Optional[int]]:
        """3.8-3.13: the tasks in ``asyncio.tasks``' registries (thread not known)."""
        found: Dict[int, Optional[int]] = {}
        for name, weak in (("_all_tasks", True), ("_scheduled_tasks", True), ("_eager_tasks", False)):
            try:
                registry = self.names.module_global(interp, "asyncio.tasks", name)
                if registry is None:
                    continue
                if weak:
                    data = dict(self.names.attributes(registry, ("data",))).get("data")
                    if data is None:
                        continue
                    refs = self.set_items(data)
                    objects = [_U64.unpack(raw)[0] if raw else 0 for raw in
                               self.mem.read_many([(ref + WR_OBJECT, 8) for ref in refs])]
                else:
                    objects = self.set_items(registry)
            except MemoryReadError:
                continue
            for task in objects:
                if task and not task & 7 and len(found) < MAX_TASKS:
                    found.setdefault(task, None)
        return found

    def set_items(self, addr: int) -> List[int]:
        head = self.mem.read(addr, SET_TABLE + 8)
        used, mask = _I64.unpack_from(head, SET_USED)[0], _I64.unpack_from(head, SET_MASK)[0]
        table = _U64.unpack_from(head, SET_TABLE)[0]
        if not (0 <= used <= mask + 1 <= MAX_SET and (mask + 1) & mask == 0):
            raise MemoryReadError("implausible set at 0x%x" % addr)
        raw = self.mem.read(table, (mask + 1) * SET_ENTRY)
        entries = struct.unpack("<%dq" % (2 * (mask + 1)), raw)
        return [key & (2 ** 64 - 1) for key, hashed in zip(entries[::2], entries[1::2])
                if key and hashed != -1]

    # -- reading one task -----------------------------------------------------------------

    def report(self, task: int, tid: Optional[int], running: Set[int]) -> Optional[TaskReport]:
        """The task at ``task``, or None when it is not one (a registry's dead weak
        reference), is done (its coroutine finished) or cannot be read (it ended)."""
        try:
            if not self._is_task(task):
                return None
            coro = self.u64(task + self.offsets.task_coro) & self._untag
        except MemoryReadError:
            return None
        frames = self.chain(coro)
        if not frames:
            return None
        self._innermost[task] = (self._last_frame, frames[0])
        report = TaskReport(task, self.task_names.name(task), frames, thread=tid,
                            running=task in running)
        if not report.running:
            report.awaits = self._awaited_future(task)
        return report

    def chain(self, coro: int) -> List[FrameInfo]:
        """The coroutines from ``coro`` down the awaits, innermost first; where one cannot be
        read the chain ends there."""
        frames: List[FrameInfo] = []
        seen: Set[int] = set()
        innermost = 0
        while coro and coro not in seen and len(frames) < MAX_CHAIN:
            seen.add(coro)
            try:
                if self.u64(coro + self.layout.ob_type) not in self.coroutine_types:
                    break
                step = self._step(coro)
            except MemoryReadError:
                break
            if step is None:
                break
            frames.append(step[0])
            coro = step[1]
            innermost = self._last_frame
        self._last_frame = innermost if frames else 0
        frames.reverse()
        return frames

    def _step(self, coro: int) -> Optional[Tuple[FrameInfo, int]]:
        """Where the coroutine (or generator) at ``coro`` is, and the object it is stopped
        awaiting (0: none, it runs or is stopped at a plain yield); None once it finished."""
        a, f = self.awaits, self.layout.frame
        if self._frame_pointer is not None:  # <=3.10: a frame object, gone once finished
            frame = self.u64(coro + self._frame_pointer)
            if not frame:
                return None
            self._last_frame = frame
            head = self.mem.read(frame, f.size)
            code = _U64.unpack_from(head, f.code)[0]
            lasti = struct.unpack_from("<i", head, f.instr)[0] * self._lasti_scale
            info = self._describe(code, max(0, lasti))
            if a.frame_state is not None:
                state = struct.unpack("<b", self.mem.read(frame + a.frame_state, 1))[0]
                if state >= a.completed:
                    return None
                if state != a.suspended:
                    return info, 0
            if lasti < 0 or self._code_byte(code, lasti + 2) != a.yield_from_opcode:
                return info, 0
            return info, self._stack_top_item(frame)
        state = struct.unpack("<b", self.mem.read(coro + (a.frame_state or 0), 1))[0]
        if state >= a.completed:
            return None
        frame = self._last_frame = coro + self._gen_iframe
        head = self.mem.read(frame, f.size)
        code = _U64.unpack_from(head, f.code)[0] & self._untag
        instr = _U64.unpack_from(head, f.instr)[0]
        info = self._describe(code, max(0, instr - code - (self.layout.code.co_code_adaptive or 0)))
        if state != a.suspended:
            return info, 0
        if a.resume_opcodes:  # 3.11/3.12: the RESUME after the last instruction says so
            opcode, oparg = self.mem.read(instr + 2, 2)
            if opcode not in a.resume_opcodes or oparg < 2:
                return info, 0
        return info, self._stack_top_item(frame)

    def _describe(self, code: int, offset: int) -> FrameInfo:
        key = self.codes.keys_for([code])[0]
        if key is None:
            raise MemoryReadError("no code object at 0x%x" % code)
        return self.codes.describe(key, offset)

    def _code_byte(self, code: int, at: int) -> int:
        """Byte ``at`` of a code object's bytecode (3.8-3.10: the bytes in ``co_code``)."""
        data = self.u64(code + (self.awaits.co_code or 0))
        if at >= _I64.unpack(self.mem.read(data + self.layout.strings.bytes_size, 8))[0]:
            return -1
        return self.mem.read(data + self.layout.strings.bytes_data + at, 1)[0]

    def _stack_top_item(self, frame: int) -> int:
        """The object ``awaited_slot`` words below the top of a frame's value stack, or 0."""
        a = self.awaits
        base = (self.u64(frame + a.valuestack) if a.valuestack is not None
                else frame + a.localsplus)
        if a.stack_top_is_pointer:
            top = self.u64(frame + a.stack_top)
        else:
            top = base + 8 * struct.unpack("<i", self.mem.read(frame + a.stack_top, 4))[0]
        at = top - 8 * a.awaited_slot
        if not top or at < base:
            return 0
        return self.u64(at) & self._untag

    def _awaited_future(self, task: int) -> Optional[str]:
        """What the task's ``_fut_waiter`` is: a task by name, or the future's type."""
        try:
            waiter = self.u64(task + self.offsets.task_coro - FUT_WAITER_BEFORE_CORO)
            if not waiter or waiter & 7:
                return None
            if self._is_task(waiter):
                return 'Task "%s"' % (self.task_names.name(waiter) or "?")
            return self.type_name(waiter)
        except MemoryReadError:
            return None

    def type_name(self, obj: int) -> Optional[str]:
        tp = self.u64(obj + self.layout.ob_type)
        if tp not in self._type_names:
            text = None
            try:
                raw = self.mem.read(self.u64(tp + TP_NAME), MAX_TYPE_NAME)
                end = raw.find(b"\0")
                if end > 0:
                    text = raw[:end].decode("utf-8", "replace")
            except MemoryReadError:
                pass
            self._type_names[tp] = text
        return self._type_names[tp]

    def _is_task(self, obj: int) -> bool:
        """Whether ``obj`` is a task: 3.14+ by its ``is_task`` flag; before, by having a
        coroutine where a task keeps one."""
        o = self.offsets
        if o.task_is_task:
            return bool(self.mem.read(obj + o.task_is_task, 1)[0])
        coro = self.u64(obj + o.task_coro)
        return bool(coro) and not coro & 7 and \
            self.u64(coro + self.layout.ob_type) in self.coroutine_types

    # -- who awaits whom ------------------------------------------------------------------

    def awaiters_314(self, task: int) -> List[int]:
        """3.14+: the tasks in ``task_awaited_by``."""
        o = self.offsets
        by = self.u64(task + o.task_awaited_by)
        if not by:
            return []
        if self.mem.read(task + o.task_awaited_by_is_set, 1)[0]:
            return self.set_items(by)[:MAX_CHILDREN]
        return [by]

    def awaited_313(self, task: int) -> List[int]:
        """3.8-3.13: the tasks ``task`` awaits: its ``_fut_waiter`` if a task, or the
        children of the ``gather`` it waits for."""
        group = self._task_group(task)
        if group is not None:
            return [t for t in self.set_items(group)[:MAX_CHILDREN] if self._is_task(t)]
        waiter = self.u64(task + self.offsets.task_coro - FUT_WAITER_BEFORE_CORO)
        if not waiter or waiter & 7:
            return []
        if self._is_task(waiter):
            return [waiter]
        children = dict(self.names.attributes(waiter, ("_children",))).get("_children")
        if children is None:
            return []
        head = self.mem.read(children, LIST_ITEMS + 8)
        size = _I64.unpack_from(head, LIST_SIZE)[0]
        if not 0 <= size <= MAX_CHILDREN:
            return []
        items = _U64.unpack_from(head, LIST_ITEMS)[0]
        found = struct.unpack("<%dQ" % size, self.mem.read(items, 8 * size)) if size else ()
        return [child for child in found if child and not child & 7 and self._is_task(child)]


    def _task_group(self, task: int) -> Optional[int]:
        """The ``_tasks`` set of the TaskGroup whose end ``task`` waits at, or None."""
        frame, info = self._innermost.get(task, (0, None))
        if info is None or info.qualname not in TASK_GROUP_EXITS \
                or not info.filename.endswith("taskgroups.py") or self._frame_pointer is not None:
            return None
        group = self.u64(frame + self.awaits.localsplus)  # ``self``, its first local
        if not group or group & 7:
            return None
        return dict(self.names.attributes(group, ("_tasks",))).get("_tasks")


def read_tasks(tree: TaskTree, interp: int, thread_states: Dict[int, int],
               current: Optional[CurrentTasks]) -> List[TaskReport]:
    """Every task of the interpreter at ``interp``; ``thread_states``: TID -> thread state."""
    o = tree.offsets
    running: Dict[int, int] = {}  # task -> TID of the thread running it, where known
    if o.thread_tasks_head:  # 3.14+
        heads: List[Tuple[int, Optional[int]]] = [(ts + o.thread_tasks_head, tid)
                                                  for tid, ts in thread_states.items()]
        heads.append((interp + o.interp_tasks_head, None))
        found = tree.from_lists(heads)
        for tid, ts in thread_states.items():
            try:
                task = tree.u64(ts + o.running_task)
            except MemoryReadError:
                continue
            if task:
                running[task] = tid
    else:
        found = tree.from_module(interp)
        try:
            for task in (current() if current is not None else []):
                running[task] = 0
                found.setdefault(task, None)
        except MemoryReadError:
            pass
    reports: Dict[int, TaskReport] = {}
    stepped = set(running)
    for task, made_in in found.items():
        report = tree.report(task, made_in or running.get(task) or None, stepped)
        if report is not None:
            reports[task] = report
    for task, report in reports.items():
        try:
            if o.thread_tasks_head:
                report.awaited_by = [t for t in tree.awaiters_314(task) if t in reports]
            else:
                for awaited in tree.awaited_313(task):
                    if awaited in reports and task not in reports[awaited].awaited_by:
                        reports[awaited].awaited_by.append(task)
        except MemoryReadError:
            continue
    return list(reports.values())
