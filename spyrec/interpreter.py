"""An attached CPython process: found (spyrec.runtime), checked (spyrec.validation), then
sampled, its threads named (spyrec.threads), until it exits or replaces its program."""

import struct
import time
from typing import Callable, List, Optional, Tuple

from spyrec.asynciotasks import (AsyncioOffsets, CurrentTasks, TaskNames, find_offsets,
                                 table_offsets)
from spyrec.codeobjects import SKIP, CodeCache, FrameInfo
from spyrec.errors import (MemoryReadError, NotPython, PermissionDenied, SpyError, TargetNotFound,
                           TargetReplaced)
from spyrec.process import (TargetMemory, check_pid, executable_path, namespace_pids,
                            process_start_time, read_maps, target_view)
from spyrec.pystrings import ObjectReader
from spyrec.nativestacks import NativeStacks
from spyrec.procstats import thread_running
from spyrec.runtime import Interpreter, find_interpreter
from spyrec.stackcapture import CaptureDecoder, SharedState, StackCapture, read_chain
from spyrec.tasktree import TaskReport, TaskTree, read_tasks
from spyrec.threadnames import ThreadNameReader
from spyrec.threads import (NamespaceTids, ThreadNaming, bound_states, find_pthread_tid_offset,
                            one_stack_per_thread)
from spyrec.validation import check_guessed_layout, check_interpreter
from spyrec.walker import StackWalker, ThreadStack, kept_runs
from spyrec.walkcommon import READ_ERRORS

#: How often a process is looked at for asyncio until it is found (seconds): for ``_asyncio``'s
#: table in its maps (3.14+), for ``asyncio.tasks`` in ``sys.modules`` (<=3.13, read again only
#: when the count of modules changed).
ASYNCIO_LOOK_EVERY_S = 1.0
ASYNCIO_MODULES_LOOK_EVERY_S = 0.1

__all__ = ["PythonProcess", "ThreadStack", "FrameInfo"]


class PythonProcess:
    """A running CPython process we can sample.  Build it with ``PythonProcess.attach(pid)``."""

    def __init__(self, pid: int, mem: TargetMemory, found: Interpreter, executable: str,
                 start_time: Optional[int]):
        self.pid = pid
        self.mem = mem
        self.version = found.version
        self.version_string = found.version_string
        self.layout = layout = found.layout
        self.executable = target_view(pid, executable)  # as the target sees it
        self.runtime_file = found.runtime_file.path
        self.runtime_address = runtime = found.runtime
        #: (start, inode) of the mapping that holds the runtime (see _check_not_replaced).
        self._runtime_map = next(((m.start, m.inode) for m in found.maps
                                  if m.start <= runtime < m.end), None)
        self._start_time = start_time
        rf = found.runtime_file
        self._types = types = {name: rf.address(name) for name in
                               ("PyCode_Type", "PyUnicode_Type", "PyBytes_Type", "PyFrame_Type",
                                "PyDict_Type", "PyLong_Type", "PyModule_Type", "PyCoro_Type",
                                "PyGen_Type", "_PyNone_Type")}
        self.objects = ObjectReader(mem, layout.strings, layout.ob_type,
                                    types["PyUnicode_Type"], types["PyBytes_Type"])
        self.codes = CodeCache(mem, layout, self.objects, types["PyCode_Type"],
                               types["_PyNone_Type"])
        self.walker = StackWalker(mem, layout, runtime, self.codes,
                                  frame_type=types["PyFrame_Type"])
        names = ThreadNameReader(mem, layout, self.objects, types)
        #: The threads' names (the sampler asks it about each new thread).
        self.naming = ThreadNaming(pid, mem, layout, runtime, names, lambda: self.walker.host_tid,
                                   self.codes)
        #: The names of the asyncio tasks threads run (once asyncio is found).
        self.tasks: Optional[TaskNames] = None
        self._names = names
        self._runtime_path = next((m.path for m in found.maps if m.start <= runtime < m.end), "")
        self._asyncio_look: Optional[float] = 0.0
        self._modules_seen = -1  # sys.modules' size at the last look for asyncio (<=3.13)
        self._asyncio_offsets: Optional[AsyncioOffsets] = None
        self._current_tasks: Optional[CurrentTasks] = None  # <=3.13, once asyncio is found
        self._tid_offset_retry = 0.0
        #: The in-kernel copies of running threads' stacks (see spyrec.stackcapture), or None.
        self.capture: Optional[StackCapture] = None
        #: The native frames of its samples (``start_capture(native=True)``), or None.
        self.native: Optional[NativeStacks] = None
        #: Whether the thread with this TID still wants its name (the sampler says so; see
        #: ``with_thread_name``).
        self.unnamed: Callable[[int], bool] = lambda tid: False
        self.walker.after_walk = self.with_thread_name
        self._closed = False

    # -- attach ------------------------------------------------------------------------------

    @classmethod
    def attach(cls, pid: int) -> "PythonProcess":
        """Attach to ``pid`` (nothing is stopped or modified in the target).

        Raises TargetNotFound, PermissionDenied, NotPython or UnsupportedPython, each with a
        one-line message (naming the version when one was found).
        """
        start_time = check_pid(pid)
        # The executable first, the memory fd second: a /proc/PID/mem fd stays bound to the
        # address space it was opened on, so one opened before an exec (``chroot ROOT python``
        # in launch mode: the PID runs chroot first) reads nothing afterwards.  In this order an
        # exec in between leaves us looking at the old program, which is not Python (a retry).
        exe = executable_path(pid)
        mem = TargetMemory(pid)
        try:
            return cls._attach(pid, mem, start_time, exe)
        except MemoryReadError as exc:
            mem.close()
            if process_start_time(pid) != start_time:
                raise TargetNotFound("process %d exited" % pid) from None
            raise NotPython("process %d (%s): its memory does not read as a CPython "
                            "interpreter's (%s)" % (pid, exe, exc)) from None
        except BaseException:
            mem.close()
            raise

    @classmethod
    def _attach(cls, pid: int, mem: TargetMemory, start_time: Optional[int],
                exe: str) -> "PythonProcess":
        found = find_interpreter(pid, mem, exe)
        proc = cls(pid, mem, found, exe, start_time)
        check_interpreter(proc)
        proc._setup_thread_ids()
        if found.layout.guessed_from is not None:
            check_guessed_layout(proc)
        return proc

    def _setup_thread_ids(self) -> None:
        """Kernel TIDs: namespace translation, and the struct pthread offset for <=3.10."""
        nspids = namespace_pids(self.pid)
        own_pid = nspids[-1] if nspids else self.pid
        if len(nspids) > 1 and own_pid != self.pid:
            self.walker.host_tid = NamespaceTids(self.pid).host_tid
        if not self.layout.has_native_thread_id:
            offset = find_pthread_tid_offset(self.pid, self.mem, self.walker, own_pid)
            self.walker.pthread_tid_offset = offset
            # Not found (no thread yet, or all exiting): look again in a second.
            self._tid_offset_retry = time.monotonic() + 1.0 if offset is None else 0.0

    def start_capture(self, rate_hz: float, native: bool = False,
                      switches: bool = True) -> None:
        """Have running threads' stacks copied at CPU-clock interrupts, about ``rate_hz`` times
        a second each (see spyrec.stackcapture), with their native stacks too if ``native``
        (see ``native``), their switches recorded if ``switches``; raises BpfUnavailable where
        not allowed."""
        try:
            shared = self.walker.shared_state()
        except (MemoryReadError, struct.error, OverflowError, ValueError):
            shared = SharedState()  # copies without the GIL's and the collector's state
        self.capture = StackCapture.open(self.layout, self.pid, rate_hz, shared, native,
                                         switches)
        self.walker.decoder = CaptureDecoder(self.layout, self.walker.frame_type)
        if native:
            self.native = NativeStacks(self.pid, self.mem, time.monotonic)
            self.walker.with_runs = True

    def still_runs(self, tid: int, frames: tuple) -> Optional[Tuple[Tuple[int, int], ...]]:
        """The runs of the eval loop (``ThreadStack.runs``) of ``frames``, a sleeping
        thread's as walked, or None when not known: read again from outside (the thread
        holds still) the way a copy is read, which tells where runs begin."""
        if self.layout.frame_kind != "iframe":
            return ((1, 0),) * len(frames)  # a run per frame object (<= 3.10)
        tstate = (self.walker.tstates or {}).get(tid)
        decoder = self.walker.decoder
        if not tstate or decoder is None:
            return None
        try:
            codes, offsets, torn, _ = decoder.decode(read_chain(self.mem, self.layout, tstate))
            keys = self.codes.keys_for(codes)
        except (MemoryReadError, struct.error, OverflowError, ValueError):
            return None
        if torn or None in keys:
            return None
        if tuple((key, offset) for key, offset in zip(keys, offsets) if key != SKIP) != frames:
            return None  # it ran since it was walked
        return tuple(kept_runs(keys, decoder.runs))

    # -- sampling ----------------------------------------------------------------------------

    def look_for_asyncio(self, now: float) -> None:
        """Until asyncio is found (it may be imported at any time), look for it now and then
        (see ASYNCIO_LOOK_EVERY_S): ``_asyncio``'s table (3.14+) or ``asyncio.tasks`` (<=3.13);
        then the walker gives each stack the task it ran in."""
        if self._asyncio_look is None or now < self._asyncio_look:
            return
        layout = self.layout
        self._asyncio_look = now + (ASYNCIO_LOOK_EVERY_S if self.version >= (3, 14)
                                    else ASYNCIO_MODULES_LOOK_EVERY_S)
        if self.version >= (3, 14):
            try:
                maps = read_maps(self.pid)
            except OSError:
                return
            offsets = find_offsets(self.pid, maps, self._runtime_path)
            if offsets is None or layout.gen_iframe is None:
                return
            self.walker.read_tasks(offsets.task_coro, layout.gen_iframe,
                                   running_task=offsets.running_task)
        else:
            offsets = table_offsets(layout)
            gen_frame = layout.gen_iframe or layout.gen_frame_pointer
            if offsets is None or gen_frame is None:
                self._asyncio_look = None
                return
            try:
                interp = self._main_interp()
                modules = self._names.module_count(interp)
            except MemoryReadError:
                return
            if modules == self._modules_seen:
                return
            self._modules_seen = modules
            current = CurrentTasks(self._names, interp)
            if not current.find():
                return
            self._current_tasks = current
            self.walker.read_tasks(offsets.task_coro, gen_frame,
                                   gen_frame_pointer=layout.gen_iframe is None,
                                   current_tasks=current)
        self._asyncio_look = None
        self.tasks = TaskNames(self.mem, self.objects, self._names.read_int, offsets)
        self._asyncio_offsets = offsets

    def _main_interp(self) -> int:
        """The main interpreter state's address."""
        return self.walker.main_interpreter()

    def read_tasks(self) -> Optional[List[TaskReport]]:
        """Every asyncio task of the main interpreter, what each awaits and which tasks await
        it (spyrec.tasktree); None while asyncio is not found."""
        self.look_for_asyncio(float("inf"))
        offsets = self._asyncio_offsets
        if self.tasks is None or offsets is None or self.layout.awaits is None:
            return None
        tree = TaskTree(self.mem, self.layout, self.codes, self._names, self.tasks, offsets,
                        (self._types["PyCoro_Type"], self._types["PyGen_Type"]))
        interp = self._main_interp()
        if self.walker.tstates is None:
            self.walker.sample()
        return read_tasks(tree, interp, self.walker.tstates or {}, self._current_tasks)

    @property
    def torn_reads(self) -> int:
        return self.walker.torn_reads

    def sample_threads(self, still=frozenset(), running=frozenset(), moment=None,
                       watched=()) -> List[ThreadStack]:
        """One stack per Python thread state of every interpreter.

        ``still``: native TIDs of threads that have not run since the last call (their last
        stacks are reused, see ``StackWalker.sample``); ``running``: those found running, whose
        latest in-kernel copy (if any) is taken instead of a walk; ``moment``: the round's
        (monotonic ns), where the ``watched`` threads' switches are recorded (see
        ``_take_captures``).
        Never raises on torn reads (they are counted in ``torn_reads``); raises TargetNotFound
        once the process is gone.
        """
        if self._tid_offset_retry and time.monotonic() >= self._tid_offset_retry:
            self._setup_thread_ids()
        self._take_captures(running, moment, watched)
        try:
            stacks = self.walker.sample(still)
            self.walker.probe_copies()
        except (MemoryReadError, PermissionDenied, struct.error, OverflowError, ValueError):
            if not self.alive():
                raise TargetNotFound("process %d exited" % self.pid) from None
            self.walker.torn_reads += 1
            stacks = []
        if not stacks:
            self._check_not_replaced()
        elif self.capture is not None and self.walker.tstates is not None:
            followed = self.capture.watch(self.walker.tstates)
            if self.native is not None:
                # and those /proc found asleep that were walked afresh: one that woke before
                # its walk is found where it went on to, where the native frames of its sleep
                # (from /proc) do not fit; copied now, it has its own
                woke = [stack.native_tid for stack in stacks
                        if stack.read_ns and not stack.copied and stack.native_tid not in running
                        and stack.native_tid not in followed]
                if followed or woke:
                    stacks = self._copied_now(stacks, followed + woke)
        stacks = bound_states(stacks, self._tids_known(), whole=not self.walker.list_cut)
        return one_stack_per_thread(stacks) if self.walker.several_interpreters else stacks

    def _copied_now(self, stacks: List[ThreadStack], followed: List[int]) -> List[ThreadStack]:
        """``stacks``, those of the threads ``followed`` that run now taken from copies made now
        (threads just followed, or found asleep before their walk).  With native frames only a
        copy gives a running thread's: without this a thread would have none in the round that
        first finds it, a large share of a short-lived one's, nor in one it woke up in.  One
        whose copy did not come while ``drain`` waited, and that left its CPU meanwhile
        (preempted, or waiting for the GIL), is taken from the copy made as it left."""
        capture = self.capture
        assert capture is not None
        running = [tid for tid in followed if thread_running("/proc", self.pid, tid)]
        if not running:
            return stacks
        fresh = capture.drain(running, again=True)
        waited = [tid for tid in running if tid not in fresh]
        if waited:
            fresh.update(capture.left_by(time.monotonic_ns(), waited))
        copied = [tid for tid in running if tid in fresh]
        if not copied:
            return stacks
        self.walker.captured = {fresh[tid].tstate: fresh[tid] for tid in copied}
        try:
            again = self.walker.walk_copied(copied)
        except (MemoryReadError, PermissionDenied, struct.error, OverflowError, ValueError):
            again = None
        finally:
            self.walker.captured = {}
        if not again:
            return stacks
        now = {stack.native_tid: stack for stack in again if stack.copied}
        return [now.get(stack.native_tid, stack) for stack in stacks]

    def sample_some_threads(self, tids, still=frozenset(), running=frozenset(),
                            moment=None) -> Optional[List[ThreadStack]]:
        """The stacks of the threads ``tids`` alone, when the caller knows no other thread ran
        since the last call (see ``StackWalker.sample_some``); None when ``sample_threads()``
        must be called instead."""
        if self._tid_offset_retry and time.monotonic() >= self._tid_offset_retry:
            return None
        self._take_captures(running, moment, tids)
        try:
            stacks = self.walker.sample_some(tids, still)
        except (MemoryReadError, PermissionDenied, struct.error, OverflowError, ValueError):
            return None
        # (one interpreter only: see StackWalker.sample_some)
        return None if stacks is None else bound_states(stacks, self._tids_known())

    def with_thread_name(self, tstate: int, stack: ThreadStack) -> ThreadStack:
        """``stack`` with the name of the Thread its first frame runs for, when its thread
        still wants its name (StackWalker.after_walk).

        Read right after the thread's walk, not after the round's walks: a thread that lives a
        millisecond, sampled in its last moments, is as often as not gone from
        ``threading._active`` by then, its frames and its Thread freed.  Even so the thread may
        have ended since its walk (the recorder preempted), its Thread freed and made again for
        the next thread: a Thread whose ids are not both set (see ThreadNaming.thread_name) is
        taken only if, read after it, the thread state is still the thread's and its first
        frame still holds that Thread (an ended thread's state has neither chunk nor frame).
        """
        if not stack.frames or not self.unnamed(stack.native_tid):
            return stack
        walker = self.walker
        thread = self.naming.thread_object(tstate, stack.frames[-1], walker.first_frame,
                                           walker.root_chunk)
        found = self.naming.thread_name(thread, stack.python_thread_id,
                                        stack.native_tid) if thread else None
        if found is None:
            return stack
        name, started = found
        if not started:
            try:
                if walker.thread_of(tstate) != (stack.native_tid, stack.python_thread_id) or \
                        self.naming.thread_object(tstate, stack.frames[-1]) != thread:
                    return stack
            except READ_ERRORS:
                return stack
        return stack._replace(name=name)

    def _tids_known(self) -> bool:
        return self.layout.has_native_thread_id or self.walker.pthread_tid_offset is not None

    def _take_captures(self, running, moment=None, watched=()) -> None:
        """Hand the walker the in-kernel copies made since the last round of the threads
        running now (with native frames, waited for a little where one has none yet: see
        ``StackCapture.drain``).  A thread that ran and then blocked is walked: blocked, it
        holds still, and its copy is older than where it waits.

        Where the threads' switches are recorded, each is taken as it was at the round's
        ``moment`` instead (``StackCapture.at``), not as /proc finds it a little later: a
        thread preempted then, or woken from a nap and not run yet, is found back at work by
        the time /proc is read, and its newest copy, made before it stopped, would put it
        where it was not; one found asleep is read from outside a moment after /proc was
        read, and by then it may have woken (a nap of a few hundred microseconds): the copy
        made as it left its CPU is where it waited.  ``watched``: the threads taken so (the
        dormant ones are not: see spyrec.dormancy)."""
        if self.capture is None:
            return
        capture = self.capture
        # (at the round's moment first: the threads taken so are not waited for)
        taken = capture.at(moment, watched) if moment is not None else {}
        fresh = capture.drain([tid for tid in running if tid not in taken])
        walker = self.walker
        walker.probed = {}
        replacing = walker.codes.replacing(time.monotonic())
        capture.identify(replacing and walker.codes.identifies)
        copies = {fresh[tid].tstate: fresh[tid] for tid in running if tid in fresh}
        for copy in taken.values():
            copies[copy.tstate] = copy
        if replacing and self.native is None:
            # A copy is read up to an interval after it was made, when the code objects it
            # ran may have been freed and others made in their place: each frame named after
            # the one it ran then, or walked from outside, its codes verified as read (see
            # StackWalker.copies_named).  (With native frames only a copy gives a running
            # thread's.)
            copies = {tstate: copy for tstate, copy in copies.items() if copy.identified}
            if not walker.copies_named():
                walker.probed, copies = copies, {}
        walker.captured = copies

    def _check_not_replaced(self) -> None:
        """Raise TargetReplaced when the process no longer maps the runtime that was attached.

        After an exec the same PID runs a new program: the old runtime's address is unmapped
        or holds something else, and walks find no thread.  Asked only then (a read of
        /proc/PID/maps), so a live interpreter pays nothing.
        """
        try:
            maps = read_maps(self.pid)
            exe = executable_path(self.pid)
        except (OSError, SpyError):
            return  # gone, or going: the next round says so
        if not maps:
            return  # exiting: its memory is already released
        address = self.runtime_address
        now = next(((m.start, m.inode) for m in maps if m.start <= address < m.end), None)
        if self._runtime_map is not None and now != self._runtime_map:
            replaced = TargetReplaced("process %d replaced its program (exec): now %s"
                                      % (self.pid, exe))
            replaced.program = exe
            raise replaced

    def alive(self) -> bool:
        start = process_start_time(self.pid)
        return start is not None and (self._start_time is None or start == self._start_time)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.capture is not None:
                self.capture.close()
                self.capture = None
            self.mem.close()

    def __enter__(self) -> "PythonProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<PythonProcess pid=%d python=%s layout=%s>" % (self.pid, self.version_string,
                                                                self.layout.name)
