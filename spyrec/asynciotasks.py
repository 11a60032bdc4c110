"""The asyncio task each thread is running.

From 3.14 each thread state records the task its event loop is stepping
(``_PyThreadStateImpl.asyncio_running_task``, Include/internal/pycore_tstate.h), and the
``_asyncio`` module describes where that field and a task's name lie in a table of its own, the
``.AsyncioDebug`` section (``_Py_AsyncioModuleDebugOffsets``, Modules/_asynciomodule.c and
Include/internal/pycore_debug_offsets.h, v3.14.0): 13 u64 values, the task object's group
(size, task_name, task_awaited_by, task_is_task, task_awaited_by_is_set, task_coro, task_node),
the interpreter's (size, asyncio_tasks_head) and the thread state's (size,
asyncio_running_loop, asyncio_running_task, asyncio_tasks_head).  The section is constant data
in the file: it is read from the file, not from the target.  ``_asyncio`` is built into some
interpreters and a separate extension module in others, mapped only once asyncio is imported,
so it is looked for again now and then until found.

Before 3.14 nothing records which task a thread runs, only which one each event loop is
stepping: ``asyncio.tasks._current_tasks``, ``{loop: task}``, _asyncio's own dict that
``_enter_task`` and ``_leave_task`` keep (Modules/_asynciomodule.c 3.8-3.13).  Its few entries
are read when a thread is found in a coroutine not seen before; the task's fields lie where the
layout's ``TaskOffsets`` say.

A task's name is a str, or until something asks for it an int that ``get_name()`` would turn into
``Task-N`` (``TaskObj_init``, Modules/_asynciomodule.c v3.14.0).
"""

import struct
from typing import Dict, List, NamedTuple, Optional, Tuple

from elftools.common.exceptions import ELFError

from spyrec.errors import MemoryReadError
from spyrec.layouts.base import Layout
from spyrec.process import MemoryMap, MemoryReader, target_file
from spyrec.pystrings import ObjectReader
from spyrec.symbols import load_elf
from spyrec.threadnames import ThreadNameReader

SECTION = ".AsyncioDebug"
_TABLE = struct.Struct("<13Q")
_U64 = struct.Struct("<Q")
#: Plausible sizes (bytes) of a task object and of a thread state (3.14.10, 3.15.2: 168; 936, 1104).
MAX_TASK_SIZE, MAX_THREAD_STATE_SIZE = 4096, 1 << 16
#: Task names kept, by (task, name object) address.
NAMES_KEPT = 4096


class AsyncioOffsets(NamedTuple):
    running_task: int  # asyncio_running_task in the thread state (a task pointer, or NULL)
    task_name: int  # task_name in the task object
    task_coro: int  # task_coro in the task object: the coroutine it runs
    # 3.14+ (0 before): what spyrec.tasktree reads of every task, not only the running ones
    task_awaited_by: int = 0  # the task awaiting it, or a set of them
    task_is_task: int = 0  # char: a Task, not a plain Future
    task_awaited_by_is_set: int = 0  # char: task_awaited_by is a set
    task_node: int = 0  # where the task is linked into its thread's (or interpreter's) list
    interp_tasks_head: int = 0  # the list heads: in the interpreter state ...
    thread_tasks_head: int = 0  # ... and in each thread state


def parse_table(data: bytes) -> Optional[AsyncioOffsets]:
    """The offsets of an ``.AsyncioDebug`` section's table, or None when they cannot be right."""
    if len(data) < _TABLE.size:
        return None
    values = _TABLE.unpack_from(data)
    (task_size, task_name, awaited_by, is_task, awaited_by_is_set, task_coro, task_node,
     interp_size, interp_head, state_size, _, running_task, thread_head) = values
    pointers = (task_name, task_coro, awaited_by, task_node)
    if not (0 < task_size <= MAX_TASK_SIZE
            and all(f % 8 == 0 and 16 <= f <= task_size - 8 for f in pointers)
            and all(16 <= f < task_size for f in (is_task, awaited_by_is_set))
            and 0 < state_size <= MAX_THREAD_STATE_SIZE
            and all(f % 8 == 0 and f <= state_size - 8 for f in (running_task, thread_head))
            and interp_head % 8 == 0 and interp_head <= interp_size - 8):
        return None
    return AsyncioOffsets(running_task, task_name, task_coro, awaited_by, is_task,
                          awaited_by_is_set, task_node, interp_head, thread_head)


def find_offsets(pid: int, maps: List[MemoryMap], runtime_path: str) -> Optional[AsyncioOffsets]:
    """The offsets from the ``_asyncio`` the process has mapped: built into the file that holds
    the runtime, or an extension module; None while there is none."""
    candidates: Dict[str, MemoryMap] = {}
    for mapping in maps:
        name = mapping.path.rsplit("/", 1)[-1]
        if mapping.path == runtime_path or name.startswith("_asyncio."):
            candidates.setdefault(mapping.path, mapping)
    for mapping in candidates.values():
        try:
            section = load_elf(target_file(pid, mapping)).elf.get_section_by_name(SECTION)
        except (OSError, ValueError, ELFError):
            continue
        if section is not None:
            found = parse_table(section.data())
            if found is not None:
                return found
    return None


def table_offsets(layout: Layout) -> Optional[AsyncioOffsets]:
    """<=3.13: the Task's offsets from the layout's table (no running task in the thread state)."""
    if layout.task is None:
        return None
    return AsyncioOffsets(0, layout.task.task_name, layout.task.task_coro)


class CurrentTasks:
    """<=3.13: reads the tasks the event loops are stepping now, once ``asyncio.tasks`` is
    imported (``_current_tasks`` is bound once, at import, and only filled and emptied)."""

    def __init__(self, objects: ThreadNameReader, interp: int):
        self.objects = objects
        self.interp = interp
        self.current: Optional[int] = None

    def find(self) -> bool:
        """Whether ``_current_tasks`` is found (looked for in ``sys.modules`` this time)."""
        try:
            self.current = self.objects.module_global(self.interp, "asyncio.tasks",
                                                      "_current_tasks")
        except MemoryReadError:
            self.current = None
        return self.current is not None

    def __call__(self) -> List[int]:
        """The addresses of the tasks being stepped (raises MemoryReadError on a torn read)."""
        if self.current is None:
            return []
        return [task for _, task in self.objects.items(self.current)]


class TaskNames:
    """The names of the tasks threads run, read from the task objects (one read of the name
    pointer a sample; the name decoded once per task and name object)."""

    def __init__(self, mem: MemoryReader, objects: ObjectReader, read_int, offsets: AsyncioOffsets):
        self.mem = mem
        self.objects = objects
        self.read_int = read_int
        self.offsets = offsets
        self._names: Dict[Tuple[int, int], Optional[str]] = {}

    def name(self, task: int) -> Optional[str]:
        """The name of the task at ``task``, or None when it cannot be read (it ended)."""
        try:
            pointer = _U64.unpack(self.mem.read(task + self.offsets.task_name, 8))[0]
        except MemoryReadError:
            return None
        key = (task, pointer)
        if key in self._names:
            return self._names[key]
        name = self._decode(pointer)
        if len(self._names) >= NAMES_KEPT:
            self._names.clear()
        self._names[key] = name
        return name

    def _decode(self, pointer: int) -> Optional[str]:
        if not pointer or pointer & 7:
            return None
        try:
            return self.objects.read_str(pointer)
        except MemoryReadError:
            pass
        try:
            return "Task-%d" % self.read_int(pointer)
        except MemoryReadError:
            return None
