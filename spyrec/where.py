"""``spyrec where``: every thread's Python stack, state and wait cause, read once.

For a process that hangs or crawls, as ``py-spy dump`` and ``austin -w`` do: nothing is
stopped.  Each thread gets its stack (innermost first), whether it was running or waiting,
whether it held the GIL, its CPU time so far, the system call and kernel function it waits in
when asleep, and (``kernel=True``, as root) its kernel frames.
"""

import json
import time
from dataclasses import dataclass, field
from typing import List, Optional

from spyrec.codeobjects import FrameInfo
from spyrec.errors import MemoryReadError
from spyrec.interpreter import PythonProcess
from spyrec.process import read_text
from spyrec.procstats import ThreadStats, kernel_stack

PROC = "/proc"
NAME_READS = 3


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


@dataclass
class ProcessReport:
    pid: int
    command: str
    python: str
    executable: str
    threads: List[ThreadReport]


def where(pid: int, kernel: bool = False) -> ProcessReport:
    """Read every thread of CPython process ``pid`` once (SpyError with one line if not)."""
    process = PythonProcess.attach(pid)
    try:
        stacks = process.sample_threads()
        threads = []
        for stack in stacks:
            tid = stack.native_tid
            stats = ThreadStats(PROC, pid, tid) if tid else None
            if stats is not None:
                stats.refresh(read_after=False)
                stats.close()
            frames = []
            for key, offset in stack.frames:
                try:
                    frames.append(process.codes.describe(key, offset))
                except MemoryReadError:
                    frames.append(FrameInfo("?", "?", "?", 0, -1))
            name = _thread_name(process, stack.python_thread_id, tid)
            report = ThreadReport(tid, name, stats.running if stats else False,
                                  stack.holds_gil, (stats.last_cpu_ns or 0) if stats else 0,
                                  frames, stack.torn)
            if stats is not None and not report.running:
                report.syscall, report.wchan = stats.cause
            if tid and kernel:
                report.kernel = kernel_stack(PROC, pid, tid)
            threads.append(report)
        threads.sort(key=lambda thread: (thread.tid != pid, thread.tid))  # the main one first
        command = (read_text(pid, "cmdline") or "").replace("\0", " ").strip()
        return ProcessReport(pid, command, process.version_string, process.executable, threads)
    finally:
        process.close()


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
        state.append("cpu %.2fs" % (thread.cpu_ns / 1e9))
        if thread.torn:
            state.append("stack read while it changed: may be cut short")
        title = 'Thread %d "%s"' % (thread.tid, escape(thread.name)) if thread.name \
            else "Thread %d" % thread.tid
        lines.append("")
        lines.append("%s: %s" % (title, ", ".join(state)))
        for frame in thread.frames:
            lines.append("    %s (%s:%d)" % (escape(frame.qualname), escape(frame.filename),
                                             frame.line))
        if not thread.frames:
            lines.append("    <no Python frames>")
        for symbol in thread.kernel:
            lines.append("    [kernel] %s" % escape(symbol))
    return "\n".join(lines) + "\n"


def as_json(report: ProcessReport) -> str:
    def frame(info: FrameInfo):
        return {"name": info.name, "qualname": info.qualname, "file": info.filename,
                "line": info.line}
    return json.dumps({
        "pid": report.pid, "command": report.command, "python": report.python,
        "executable": report.executable,
        "threads": [{"tid": t.tid, "name": t.name, "running": t.running, "gil": t.holds_gil,
                     "cpu_ns": t.cpu_ns, "torn": t.torn, "syscall": t.syscall, "wchan": t.wchan,
                     "frames": [frame(f) for f in t.frames], "kernel": t.kernel}
                    for t in report.threads]}, indent=2) + "\n"
