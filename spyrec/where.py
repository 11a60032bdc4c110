"""``spyrec where``: every thread's Python stack, state and wait cause, read once.

One round of the sampler, as a recording would take it, into a sink that keeps it
(``Snapshot``), so a thread's state, GIL and wait cause mean here what they mean in a recording.

For a process that hangs or crawls, as ``py-spy dump`` and ``austin -w`` do: nothing is
stopped.  Each thread gets its stack (innermost first), whether it was running or waiting,
whether it held the GIL, its CPU time so far, the system call and kernel function it waits in
when asleep, and (as root) its kernel frames (``kernel=True``) and native frames
(``native=True``).  With ``tasks=True``, every asyncio task too, each under the task awaiting
it, with the coroutines it is suspended in and the future it waits for (spyrec.tasktree).
As root, a running thread's stack is the one copied at its next interrupt, as in a recording:
whole and of one moment, where one read from outside may mix the moments of a stack that
changes faster than it is read.
"""

import json
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from spyformat import GC_FRAME, TASK_FILE, FrameKind, SampleFlag
from spyrec.codeobjects import FrameInfo
from spyrec.interpreter import PythonProcess
from spyrec.process import read_text
from spyrec.procstats import kernel_stack
from spyrec.recorder import BPF_ENV, start_copies, start_native
from spyrec.sampler import Sampler
from spyrec.sinks import NullSink
from spyrec.tasktree import TaskReport

PROC = "/proc"
NAME_READS = 3
#: The sampler's interval, which one round does not use.
ONE_ROUND_NS = 10_000_000
#: Levels of the task tree indented; deeper ones say their level instead.
MAX_INDENT = 32
#: As root: the round interval the copies at interrupts are asked for (twice a round, no
#: faster than spyrec.stackcapture allows).
COPY_PERIOD_NS = 2_000_000
#: Rounds tried, as root, for one in which every running thread's stack was copied at an
#: interrupt, which a round may miss (the thread off its CPU then), and with native frames,
#: one in which its Python frames have native frames too (the copy paired up with the frames
#: read).  Past them, a thread not copied is read from outside, as without root.
COPY_ROUNDS = 10


@dataclass
class ThreadReport:
    tid: int
    name: Optional[str]
    running: bool
    holds_gil: bool
    cpu_ns: int
    frames: List[FrameInfo]  # innermost first
    torn: bool
    syscall: Optional[str] = None
    wchan: Optional[str] = None
    kernel: List[str] = field(default_factory=list)  # innermost first
    #: Which of ``frames`` are native functions (with ``native=True``; file: their library).
    native: List[bool] = field(default_factory=list)
    #: The source file of each native frame's line ("": none; its line is in ``frames``).
    sources: List[str] = field(default_factory=list)
    collecting: bool = False  # the garbage collector was running in it
    task: Optional[str] = None  # the asyncio task its event loop was running


@dataclass
class ProcessReport:
    pid: int
    command: str
    python: str
    executable: str
    threads: List[ThreadReport]
    #: With ``tasks=True``: every asyncio task (empty when asyncio is not imported); None when
    #: not asked for.
    tasks: Optional[List[TaskReport]] = None
    #: Why ``tasks`` is empty, when it is.
    tasks_note: str = ""


class Snapshot(NullSink):
    """A sink that keeps one round: the definitions its samples use, and the samples."""

    def __init__(self):
        super().__init__()
        self.strings: List[str] = []
        self.frames: List[FrameInfo] = []
        self.native: List[bool] = []  # whether each frame is a native function
        self.sources: List[str] = []  # the source file of a native frame's line
        self.stacks: List[tuple] = []
        self.threads: Dict[int, dict] = {}  # tid -> the THREAD records' fields, merged
        self.rows: List[tuple] = []  # (tid, stack id, flags, syscall, wchan)

    def define_string(self, text):
        self.strings.append(text)
        return len(self.strings) - 1

    def define_frame(self, file, name, qualname, line, column=-1, kind=0, source=0):
        strings = self.strings
        self.frames.append(FrameInfo(strings[file], strings[name], strings[qualname], line, column))
        self.native.append(kind == FrameKind.NATIVE)
        self.sources.append(self.text(source) or "")
        return len(self.frames) - 1

    def define_stack(self, frame_ids):
        self.stacks.append(frame_ids)
        return len(self.stacks) - 1

    def thread(self, **fields):
        self.threads.setdefault(fields["tid"], {}).update(fields)

    def sample(self, t, pid, tid, stack, cpu, rss, flags, syscall=0, wchan=0):
        self.rows.append((tid, stack, flags, syscall, wchan))

    def samples(self, t, pid, rss, rows):
        self.rows.extend(zip(*rows))

    def running_without_native(self) -> bool:
        """Whether a thread found running has Python frames and no native frame."""
        native = self.native
        for _tid, stack, flags, _syscall, _wchan in self.rows:
            frames = self.stacks[stack]
            if not flags & SampleFlag.IDLE and frames and not any(native[f] for f in frames):
                return True
        return False

    def running_with_frames(self) -> int:
        """How many threads were found running with Python frames."""
        return sum(1 for _tid, stack, flags, _syscall, _wchan in self.rows
                   if not flags & SampleFlag.IDLE and self.stacks[stack])

    def text(self, string_id):
        """The text of a sample's ``syscall`` or ``wchan`` (1 + a string id), None for 0."""
        return self.strings[string_id - 1] if string_id else None


def where(pid: int, kernel: bool = False, native: bool = False,
          tasks: bool = False) -> ProcessReport:
    """Read every thread of CPython process ``pid`` once (SpyError with one line if not):
    one round of the sampler, into a ``Snapshot``.  As root, a first round learns the
    threads, whose running ones are then copied at their next interrupts for the round
    reported.  ``native``: with native frames (root).  ``tasks``: every asyncio task, read
    after the round."""
    process = PythonProcess.attach(pid)
    try:
        snapshot = Snapshot()
        sampler = Sampler(process, snapshot, ONE_ROUND_NS, time.monotonic_ns(), PROC)
        sampler.woke = False  # no CPU to give back: one round, not a loop (see StepAside)
        walker = process.walker
        if native:
            start_native(process, COPY_PERIOD_NS)
            if process.native is not None:  # one round: its lines now, not rounds later
                process.native.lines.wait = True
        elif os.environ.get(BPF_ENV) != "0":
            start_copies(process, COPY_PERIOD_NS, switches=False)

        def done() -> bool:
            """Whether every running thread's stack of the last round was copied (with its
            native frames, where asked for)."""
            if native:
                return process.native is None or not snapshot.running_without_native()
            return walker.captured_stacks >= snapshot.running_with_frames()

        sampler.sample_round(time.monotonic_ns())  # (learns the threads to copy)
        for _ in range(COPY_ROUNDS if process.capture is not None else 0):
            snapshot.rows.clear()
            time.sleep(3 * COPY_PERIOD_NS / 1e9)
            walker.captured_stacks = 0
            sampler.sample_round(time.monotonic_ns())
            if done():
                break
        threads = []
        for tid, stack, flags, syscall, wchan in snapshot.rows:
            record = snapshot.threads.get(tid, {})
            name = _thread_name(process, record.get("py_thread_id") or 0, tid)
            ids = [f for f in reversed(snapshot.stacks[stack])
                   if snapshot.frames[f].filename != TASK_FILE]
            frames = [snapshot.frames[f] for f in ids]
            collecting = bool(frames) and frames[0].filename == GC_FRAME  # a mark, not code
            task = next((snapshot.frames[f].name for f in snapshot.stacks[stack]
                         if snapshot.frames[f].filename == TASK_FILE), None)
            if collecting:
                frames, ids = frames[1:], ids[1:]
            report = ThreadReport(tid, name or record.get("name"), not flags & SampleFlag.IDLE,
                                  bool(flags & SampleFlag.GIL), sampler.cpu_ns(tid), frames,
                                  bool(flags & SampleFlag.TORN),
                                  snapshot.text(syscall), snapshot.text(wchan),
                                  collecting=collecting, task=task,
                                  native=[snapshot.native[f] for f in ids],
                                  sources=[snapshot.sources[f] for f in ids])
            if tid and kernel:
                report.kernel = kernel_stack(PROC, pid, tid)
            threads.append(report)
        sampler.finish()
        threads.sort(key=lambda thread: (thread.tid != pid, thread.tid))  # the main one first
        command = (read_text(pid, "cmdline") or "").replace("\0", " ").strip()
        whole = ProcessReport(pid, command, process.version_string, process.executable, threads)
        if tasks:
            _add_tasks(whole, process)
        return whole
    finally:
        process.close()


def _add_tasks(report: ProcessReport, process: PythonProcess) -> None:
    if process.layout.awaits is None:
        report.tasks = []
        report.tasks_note = ("asyncio tasks cannot be read on CPython %s"
                             % process.version_string)
        return
    found = process.read_tasks()
    report.tasks = found or []
    if found is None:
        report.tasks_note = "no asyncio tasks: asyncio is not imported"
    elif not found:
        report.tasks_note = "no asyncio tasks"


def _thread_name(process: PythonProcess, ident: int, tid: int) -> Optional[str]:
    """The thread's ``threading`` name, read up to three times (a read of the target's
    ``threading._active`` can meet it changing), else its kernel name if the program set one."""
    for _ in range(NAME_READS):
        name = process.naming.threading_name(ident, tid)
        if name is not None:
            return name
        time.sleep(0.001)
    return process.naming.os_thread_name(tid) if tid else None


def as_text(report: ProcessReport, escape) -> str:
    """The report for a terminal, names passed through ``escape`` (they come from the target)."""
    lines = ["Process %d: %s" % (report.pid, escape(report.command)),
             "Python %s (%s)" % (report.python, escape(report.executable))]
    for thread in report.threads:
        state = ["running" if thread.running else "waiting"]
        if not thread.running and (thread.syscall or thread.wchan):
            cause = thread.syscall or "?"
            if thread.wchan:
                cause += " (%s)" % escape(thread.wchan)
            state[0] = "waiting in " + cause
        if thread.holds_gil:
            state.append("holds the GIL")
        if thread.collecting:
            state.append("collecting garbage")
        if thread.task is not None:
            state.append("in task %s" % escape(thread.task))
        state.append("cpu %.2fs" % (thread.cpu_ns / 1e9))
        if thread.torn:
            state.append("stack read while it changed: may be cut short")
        title = 'Thread %d "%s"' % (thread.tid, escape(thread.name)) if thread.name \
            else "Thread %d" % thread.tid
        lines.append("")
        lines.append("%s: %s" % (title, ", ".join(state)))
        sources = thread.sources or [""] * len(thread.frames)
        for frame, native, source in zip(thread.frames, thread.native or [False] * len(thread.frames),
                                         sources):
            if native:
                library = escape(os.path.basename(frame.filename))
                place = "%s:%d, %s" % (escape(os.path.basename(source)), frame.line, library) \
                    if source else library
                lines.append("    [native] %s (%s)" % (escape(frame.qualname), place))
            else:
                lines.append("    " + _frame_text(frame, escape))
        if not thread.frames:
            lines.append("    <no Python frames>")
        for symbol in thread.kernel:
            lines.append("    [kernel] %s" % escape(symbol))
    if report.tasks is not None:
        lines.append("")
        lines.extend(_tasks_text(report.tasks, report.tasks_note, escape))
    return "\n".join(lines) + "\n"


def _frame_text(frame: FrameInfo, escape) -> str:
    return "%s (%s:%d)" % (escape(frame.qualname), escape(frame.filename), frame.line)


def _tasks_text(tasks: List[TaskReport], note: str, escape) -> List[str]:
    """The tasks as a tree: each task under the tasks awaiting it, its coroutines innermost
    first.  A task awaited by several shows whole under the first; one in a cycle of tasks
    awaiting each other says so where the cycle closes."""
    if not tasks:
        return [note]
    by_address = {task.address: task for task in tasks}
    awaited: Dict[int, List[TaskReport]] = {}  # task -> the tasks it awaits
    for task in tasks:
        for awaiter in task.awaited_by:
            awaited.setdefault(awaiter, []).append(task)
    lines = ["asyncio tasks (%d), each under the task awaiting it:" % len(tasks)]
    shown: Set[int] = set()
    roots = [task for task in tasks if not any(a in by_address for a in task.awaited_by)]
    rest = sorted(tasks, key=lambda t: t.address)  # cycles: no task outside awaits them
    for first in sorted(roots, key=lambda t: (t.running, t.address)) + rest:
        if first.address in shown:
            continue
        todo = [(first, 0)]  # (task, its depth): depth first, the path to it in ``path``
        path: List[int] = []
        on_path: Set[int] = set()
        while todo:
            task, depth = todo.pop()
            on_path.difference_update(path[depth:])
            del path[depth:]
            pad = "    " * min(depth, MAX_INDENT) + ("(level %d) " % depth
                                                        if depth > MAX_INDENT else "")
            title = 'Task "%s" (0x%x' % (escape(task.name or "?"), task.address)
            if task.address in on_path:
                lines.append("%s%s): awaits a task above it, a cycle" % (pad, title))
                continue
            if task.address in shown:
                lines.append("%s%s): shown above" % (pad, title))
                continue
            shown.add(task.address)
            path.append(task.address)
            on_path.add(task.address)
            state = "running" if task.running else \
                "waiting for %s" % escape(task.awaits) if task.awaits else "waiting"
            thread = ", thread %d" % task.thread if task.thread else ""
            lines.append("%s%s%s): %s" % (pad, title, thread, state))
            lines.extend("%s    %s" % (pad, _frame_text(frame, escape)) for frame in task.frames)
            below = sorted(awaited.get(task.address, []), key=lambda t: t.address, reverse=True)
            todo.extend((child, depth + 1) for child in below)
    return lines


def as_json(report: ProcessReport) -> str:
    def frame(info: FrameInfo, native: bool = False, source: str = ""):
        found = {"name": info.name, "qualname": info.qualname, "file": info.filename,
                 "line": info.line, "kind": "native" if native else "python"}
        if source:  # a native frame's line is in its source file
            found["source"] = source
        return found
    return json.dumps({
        "pid": report.pid, "command": report.command, "python": report.python,
        "executable": report.executable,
        "threads": [{"tid": t.tid, "name": t.name, "running": t.running, "gil": t.holds_gil,
                     "cpu_ns": t.cpu_ns, "torn": t.torn, "gc": t.collecting, "task": t.task,
                     "syscall": t.syscall, "wchan": t.wchan,
                     "frames": [frame(f, native, source) for f, native, source in
                                zip(t.frames, t.native or [False] * len(t.frames),
                                    t.sources or [""] * len(t.frames))],
                     "kernel": t.kernel}
                    for t in report.threads],
        **({} if report.tasks is None else {"tasks": [
            {"id": t.address, "name": t.name, "running": t.running, "thread": t.thread,
             "awaits": t.awaits, "awaited_by": t.awaited_by,
             "frames": [frame(f) for f in t.frames]} for t in report.tasks]}),
    }, indent=2) + "\n"
