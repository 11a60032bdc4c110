"""The sampling loop: a steady clock, every thread's stack, CPU and state, written as it goes.

One *round* samples every Python thread of the target once.  Rounds are scheduled on a fixed
grid of intervals (``origin + k * interval``), so that a slow round does not shift the ones
after it, each at a random moment of its interval (stratified sampling): a program whose work
repeats at a period near a multiple of the interval would otherwise be sampled at nearly the
same phase of it, round after round (a module body of half a millisecond came out up to 6
points over or under its time by run).  The moment is drawn from the part of the interval that
a round of the usual cost leaves, so that the rounds keep the rate; where running threads'
stacks are copied at their timed interrupts, whose moments the kernel sets, rounds keep to the
grid (see ``Sampler._jittered``).  A round that ends past the next grid point is followed by
one a random part of an interval later, on a grid shifted with it (``LATE_JITTER``), and one
that ends more than an interval late is counted as late, as Austin counts saturation.  Where
the threads' switches are recorded, a round takes them as they were at its moment even when it
starts after it, and the moments keep to the grid however long the rounds take
(``Sampler._moments_kept``).

The hot path stays small: the walker returns raw frames as ``(code_key, offset)`` pairs, a
thread's stack that the walker kept whole costs nothing, and one seen before a dict lookup in
the ``StackResolver``; what a round found goes to a sink (spyrec.sinks).
"""

import time
from random import random
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

from spyrec.cpubudget import CpuBudget
from spyrec.dormancy import DormantWatch
from spyrec.errors import TargetNotFound, TargetReplaced
from spyrec.nativestacks import awaits_lines
from spyrec.procstats import DORMANT_AFTER, ProcessStats, ThreadStats
from spyrec.resolver import StackResolver
from spyrec.scheduling import LowLatency, StepAside
from spyrec.sinks import Sink
from spyrec.switches import SLEPT
from spyrec.walker import ThreadStack

if TYPE_CHECKING:  # the sampler is handed one; importing it for real is the caller's business
    from spyrec.descendants import Descendants
    from spyrec.interpreter import PythonProcess
from spyformat import SampleFlag

#: A thread's ``threading`` name is looked up when it is first seen and again at each of its next
#: NAME_EAGER_TRIES rounds until found (a new thread is in ``threading._active`` only once it
#: runs, and a request's thread may live a few ms), then at intervals doubling from
#: NAME_BACKOFF_NS up to NAME_RETRY_NS (a thread ``threading`` did not start is never found).
NAME_EAGER_TRIES = 50
NAME_BACKOFF_NS = 1_000_000
NAME_RETRY_NS = 1_000_000_000


class _Thread:
    """What the sampler keeps about one target thread between rounds."""

    __slots__ = ("stats", "py_thread_id", "named", "os_name", "os_name_read", "name_tries",
                 "next_name_try", "missing", "cpu_delta", "last_frames", "last_kernel",
                 "last_task", "last_stack_id", "row", "counted", "last_native", "provisional",
                 "dormant_since")

    def __init__(self, stats: ThreadStats, py_thread_id: int) -> None:
        self.stats = stats
        self.py_thread_id = py_thread_id
        self.named = False  # its threading name was found
        self.os_name = None  # its kernel name, written while the threading name is not known
        self.os_name_read = False  # that name was looked for (see Sampler._try_name)
        self.name_tries = 0
        self.next_name_try = 0
        self.missing = False
        self.cpu_delta = 0  # CPU time since the previous round, read at this round's start
        self.last_frames = None  # the walker's frames tuple of the last sample, and its stack id
        self.last_kernel = ()  # the kernel frames under them
        self.last_task: Optional[str] = None  # the asyncio task they ran in
        self.last_stack_id = None
        self.row = None  # (stack id, flags, syscall, wchan) of its last sample
        self.counted = 0  # its switch count, added to the dormant threads' sum while dormant
        self.last_native = None  # its native frames as placed in its last sample, if any
        #: some of those had a line not decoded yet (spyrec.nativelines): read them again
        self.provisional = False
        self.dormant_since = 0  # when it was last found dormant (monotonic ns)


def _threads_alive(active: Dict[int, _Thread], dormant: Dict[int, _Thread]) -> Dict[int, _Thread]:
    """Every live thread: the active and the dormant ones, in one dict."""
    if not dormant:
        return active
    alive = dict(active)
    alive.update(dormant)
    return alive


def _asleep_last_round(item: Tuple[int, _Thread]) -> bool:
    """Sort key: threads found running by the last round first (``sorted`` is stable)."""
    return not item[1].stats.running


#: A round that reads every thread comes at least this often, however quiet the process: it
#: follows the whole thread list again (a thread state some C code removes while its thread
#: lives on is noticed there).
FULL_ROUND_EVERY_NS = 1_000_000_000
#: With native frames, a thread dormant this long is no longer followed by the stack copies'
#: events until it runs again (see ``Sampler._rest_dormant``): a thread that works now and
#: then keeps them, one that waits for seconds gives back what they pin.  Checked this often.
REST_AFTER_NS = 1_000_000_000
REST_CHECK_NS = 100_000_000

#: How many times the active threads' switch counts are read again when a thread switched in
#: while they were read (see Sampler._quiet).
QUIET_RETRIES = 3

#: How often the live status line is rewritten.
PROGRESS_EVERY_NS = 500_000_000
#: With native frames, how often the stacks defined before their units' lines were decoded
#: are given them (see StackResolver.settle)...
SETTLE_EVERY_NS = 20_000_000
#: ...how long the writer's flushes may wait, from when stacks began to await their lines,
#: while the line helper decodes their units (a killed recorder may lose as much more)...
FLUSH_HOLD_NS = 2_000_000_000
#: ...and how long the end of a recording waits for the helper to finish (seconds).
LINES_AT_END_S = 2.0
#: A round that ends past the next one's grid point is followed by one after a random delay of
#: up to this share of the interval.  At once, when the next round ran would depend on what
#: this one read (a stack that changed costs more to walk), and the samples lock onto the
#: program's rhythm: at 10 kHz, where rounds often overrun, one state of a 30-frame target came
#: out 3 points over its time (docs/benchmarks.md, "Why "max" samples the states unevenly").
LATE_JITTER = 0.25
#: Asked to (``--realtime``), the sampling thread takes real time (see LowLatency) only at
#: rates whose rounds leave it sleeping most of the time: 2 kHz and below...
REALTIME_MIN_INTERVAL_NS = 500_000
#: ...and steps down after this many rounds in a row found no time to sleep.
REALTIME_BEHIND_ROUNDS = 20


class SamplingStats:
    """The recorder's account of its own health; it becomes the recording's trailer."""

    def __init__(self) -> None:
        self.rounds = 0
        self.samples = 0
        self.errors = 0
        self.late = 0
        self.cost_min: Optional[int] = None
        self.cost_max = 0
        self.cost_total = 0
        self.start_ns = 0
        self.end_ns = 0
        self.stop_reason = "interrupted"
        #: How a launched command ended (``exited with status 0``); None in attach mode.
        self.command_status: Optional[str] = None
        #: Bytes the recording took (set by ``record``).
        self.bytes_written = 0
        #: Grid points skipped because the machine was busy (see spyrec.cpubudget).
        self.throttled = 0
        #: Stacks taken from copies made at interrupts (see spyrec.stackcapture).
        self.copied_stacks = 0
        #: With native frames: samples given them, and samples whose native stack could not
        #: be put among their Python frames (see spyrec.nativestacks).
        self.native_stacks = 0
        self.native_unmerged = 0
        #: Samples whose stack was walked from outside in their round, and of those the ones
        #: whose walk tore and was done again, later (see ThreadStack.reread).
        self.walked = 0
        self.reread = 0

    def add_round_cost(self, cost: int) -> None:
        self.rounds += 1
        self.cost_total += cost
        if self.cost_min is None or cost < self.cost_min:
            self.cost_min = cost
        if cost > self.cost_max:
            self.cost_max = cost

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def trailer(self) -> Dict[str, Any]:
        mean = self.cost_total // self.rounds if self.rounds else 0
        return {"end_ns": self.end_ns, "duration_ns": self.duration_ns, "ticks": self.rounds,
                "samples": self.samples, "errors": self.errors, "late": self.late,
                "sampling_cost_ns": [self.cost_min or 0, mean, self.cost_max],
                "stop_reason": self.stop_reason, "walked": self.walked, "reread": self.reread}


class Sampler:
    """Samples one attached ``PythonProcess`` into a sink (see spyrec.sinks)."""

    def __init__(self, process: "PythonProcess", sink: Sink, interval_ns: int, origin_ns: int,
                 proc_root: str = "/proc", kernel: bool = False,
                 stats: Optional[SamplingStats] = None) -> None:
        """``kernel``: put a sleeping thread's kernel frames under its Python frames;
        ``stats``: counts shared with another sampler (a descendant's, with the target's)."""
        self.process = process
        self.kernel = kernel
        #: The target's descendants, sampled in its rounds (``spyrec -C``), or None.
        self.descendants: Optional["Descendants"] = None
        self.sink = sink
        native = process.native
        self.resolver = StackResolver(process.codes, sink,
                                      native.lines_now if native is not None else None)
        self._next_settle = 0
        self._flush_held_since: Optional[int] = None
        self.interval_ns = interval_ns
        self.origin_ns = origin_ns
        self.proc_root = proc_root
        self.stats = SamplingStats() if stats is None else stats
        #: native TID -> _Thread, every thread met (those ended marked ``missing``); the live
        #: ones are either *active*, read every round, or *dormant*: found still
        #: ``DORMANT_AFTER`` times in a row, their last sample repeated while the process's
        #: switch count says none of them ran (see spyrec.dormancy).
        self._threads: Dict[int, _Thread] = {}
        self._active: Dict[int, _Thread] = {}
        self._dormant: Dict[int, _Thread] = {}
        self._dormant_switches = 0
        self._dormant_rows = None  # the dormant threads' samples as sink.samples columns
        self._dormant_names_due = 0  # the soonest name lookup due for a dormant thread
        self._watch = None
        self._states: Dict[int, int] = {}  # the round's StackCapture.states
        #: When the coming round is due (monotonic ns), set by ``run``; None: not known.
        self.due_ns: Optional[int] = None
        self._watch_tried = False
        self._next_full_round = 0
        self._next_rest = 0
        self._process_stats = ProcessStats(proc_root, process.pid)
        self._rss: Optional[int] = None  # the process's resident set, as last read
        self.step_aside = StepAside()
        #: Target threads the last round found running or runnable (see spyrec.cpubudget).
        self.target_running = 0
        #: Whether the coming round follows a sleep: only then can the sampler have woken on
        #: a CPU a target thread is queued for (back to back, it keeps its CPU, and the
        #: kernel keeps the target's threads off it).
        self.woke = True
        process.unnamed = self._unnamed

    def _unnamed(self, tid: int) -> bool:
        """Whether the thread with this TID is one not named yet: not met, not named since
        it was, or ended (its TID free for the next thread)."""
        thread = self._threads.get(tid)
        return thread is None or thread.missing or not thread.named

    def run(self, should_stop: Callable[[], bool], duration_ns: Optional[int] = None,
            progress: Optional[Callable[["SamplingStats", int], None]] = None,
            realtime: bool = False) -> SamplingStats:
        """Sample until ``should_stop()`` is true, ``duration_ns`` has passed since the first
        round, or the target exits.

        The duration counts from the first round, not from the start of the recorder: what
        the user asked for is that much time sampled, however long attaching took.
        ``progress(stats, elapsed_ns)`` is called about every ``PROGRESS_EVERY_NS``, between
        rounds (the live status line).  ``realtime``: sample at real-time priority where
        allowed (see LowLatency).
        """
        interval = self.interval_ns
        scheduling = LowLatency(realtime=realtime and interval >= REALTIME_MIN_INTERVAL_NS)
        budget = CpuBudget.open()
        behind = 0  # rounds in a row that found no time to sleep
        late_jitter = interval * LATE_JITTER
        self.process.naming.find_threading()
        monotonic_ns, thread_time_ns = time.monotonic_ns, time.thread_time_ns
        sleep = time.sleep
        stats = self.stats
        start = monotonic_ns()
        stats.start_ns = start - self.origin_ns
        next_round = grid = start  # (the round's time, and the start of its interval)
        cost = 0  # a round's usual wall time (ns, a moving average)
        deadline_ns = start + duration_ns if duration_ns else None
        next_progress = start + PROGRESS_EVERY_NS if progress else None
        try:
            while True:
                if should_stop():
                    stats.stop_reason = "interrupted"
                    break
                now = monotonic_ns()
                if deadline_ns is not None and max(now, next_round) >= deadline_ns:
                    # no further round falls in the time asked for: wait out the rest of it
                    if deadline_ns > now:
                        sleep((deadline_ns - now) / 1e9)
                    stats.stop_reason = "duration"
                    break
                self.woke = next_round > now
                if self.woke:
                    behind = 0
                    sleep((next_round - now) / 1e9)
                    now = monotonic_ns()
                else:
                    behind += 1
                    if behind == REALTIME_BEHIND_ROUNDS:
                        scheduling.step_down()
                cpu_before = thread_time_ns() if budget is not None else 0
                self.due_ns = next_round
                stop_reason = self._round(now)
                if stop_reason is not None:
                    stats.stop_reason = stop_reason
                    break
                done = monotonic_ns()
                stats.add_round_cost(done - now)
                grid += interval
                if self._moments_kept():
                    # (each round at a random moment of its interval on the grid, which the
                    # rounds' costs never shift: one that starts late takes the threads as
                    # they were at its moment, passed; an interval over before a round could
                    # start is skipped)
                    if done > grid + interval:
                        stats.late += 1
                        grid += (done - grid) // interval * interval
                    next_round = grid + int(random() * interval)
                elif done > grid:
                    # (late: the next round waits a random part of an interval; see LATE_JITTER)
                    if done - grid > interval:
                        stats.late += 1
                    grid = done + int(random() * late_jitter)
                    next_round = grid
                else:
                    # (a random moment of the interval, of the part a round of the usual cost
                    # leaves before the next one: the rate asked for is kept)
                    cost += (done - now - cost) >> 3
                    next_round = grid + (int(random() * max(0, interval - 2 * cost))
                                         if self._jittered() else 0)
                if budget is not None:
                    # a target's descendants (spyrec -C) are the target too, not other work,
                    # nor is the recorder's own line helper
                    running = self.target_running + (self.descendants.target_running
                                                     if self.descendants is not None else 0)
                    native = self.process.native
                    running += native is not None and native.lines.working
                    later = budget.next_round(done, thread_time_ns() - cpu_before, grid,
                                              interval, running)
                    if later != grid:  # (intervals skipped: see CpuBudget)
                        next_round += later - grid
                        grid = later
                if not self._holding_flush(done):
                    self.sink.maybe_flush(done)
                self.sink.work()  # a slice of a batch being written, if any
                if progress is not None and next_progress is not None and done >= next_progress:
                    progress(stats, done - start)
                    next_progress = done + PROGRESS_EVERY_NS
        finally:
            stats.end_ns = monotonic_ns() - self.origin_ns
            scheduling.restore()
            if budget is not None:
                stats.throttled = budget.skipped
                budget.close()
            if self.descendants is not None:
                self.descendants.close(stats.end_ns)
            self.finish()
        return stats

    def _moments_kept(self) -> bool:
        """Whether a round takes the threads as they were at its moment even when it starts
        after it: where their switches are recorded (see StackCapture.at).  A late round's
        moment then stays where the grid put it: one drawn after the end of a slow round (see
        LATE_JITTER) falls where the program is at a fixed delay after what made the round
        slow, and the samples lock onto its rhythm (a thread that works and naps in turn came
        out 3-5 points under its work with native frames, whose rounds run late)."""
        capture = self.process.capture
        return capture is not None and capture.records_switches

    def _jittered(self) -> bool:
        """Whether rounds come at a random moment of their interval: not where the stacks of
        running threads are the copies made at their timed interrupts (see
        spyrec.stackcapture), whose moments the kernel sets: a round that came sooner after
        the last one would more often find no copy since, and read the thread from outside.
        While code objects are replaced, so do the walks from outside that take the copies'
        place (see StackWalker.copies_named)."""
        process = self.process
        walker = process.walker
        return (process.capture is None or process.native is not None
                or process.capture.records_switches
                or walker.replacing and not walker.copies_named())

    def _round(self, now: int) -> Optional[str]:
        """One round; None, or why the recording ends (the trailer's stop reason)."""
        try:
            self.sample_round(now)
            if self.descendants is not None:
                self.descendants.due_ns = self.due_ns
                self.descendants.sample_round(now)
        except TargetReplaced as exc:
            return "target replaced its program (exec): %s" % exc.program
        except TargetNotFound:
            return "target exited"
        except Exception as exc:  # noqa: BLE001 - any bug ends the recording, whole
            # The samples so far are the user's: end with the trailer written and the reason
            # in it (the spec's "error: ..." stop reason) instead of a traceback.
            return "error: %s: %s" % (type(exc).__name__, exc)
        return None

    def sample_round(self, now: int) -> None:
        """Sample every thread once, the round begun at ``now`` (monotonic ns), due at
        ``due_ns`` (the moment the threads are taken at where their switches are recorded:
        see PythonProcess._take_captures).

        A walked stack is stamped when its thread state was copied (``ThreadStack.read_ns``):
        the /proc reads before the walks take time, stepping aside for a target thread can
        take a slice, and a torn walk is done again, while the program moves on.  A stack kept
        from an earlier walk holds from then to the checks made at the start of the round, and
        is stamped with the round."""
        process = self.process
        t = now - self.origin_ns
        due = self.due_ns
        process.look_for_asyncio(now / 1e9)
        active, dormant = self._active, self._dormant
        watch = self._watch_for(dormant)
        before = watch.count() if watch is not None and watch.wants_measure else None
        # /proc first: a thread found still (asleep at the last round, not run since) keeps
        # the stack read then, and costs no walk (see ThreadStats.refresh); and a target
        # thread queued for this CPU gets it back before the walks (see StepAside).
        still: Set[int] = set()
        need_cpu = self.woke and self.step_aside.enabled
        if process.capture is not None:  # (with native frames: see StackCapture.arm)
            process.capture.arm([tid for tid, thread in active.items() if thread.stats.running])
        switches = self._refresh_active(still, need_cpu)
        stacks: Optional[List[ThreadStack]] = None
        # the threads whose in-kernel stack copies may be taken (see spyrec.stackcapture)
        running: Set[int] = ({tid for tid, thread in active.items() if thread.stats.running}
                             if process.capture is not None else set())
        if (watch is not None and now < self._next_full_round
                and now < self._dormant_names_due and self._quiet(watch, switches)):
            # With every thread dormant nothing in the process ran: not even its thread list
            # can have changed (a descendant waiting for work, spyrec -C), nor its memory.
            stacks = (process.sample_some_threads(list(active), still, running, due) if active
                      else [])
        quiet = stacks is not None
        woke = []
        if not quiet:
            for tid, thread in dormant.items():
                stats = thread.stats
                thread.cpu_delta = stats.refresh(need_cpu=need_cpu)
                switches += stats.switches
                if stats.still:
                    still.add(tid)
                if stats.still_count < DORMANT_AFTER:
                    woke.append(tid)
                    if process.capture is not None:
                        process.capture.wake(tid)  # (followed again if it rested)
                self.target_running += stats.running
                if stats.running and process.capture is not None:
                    running.add(tid)
            if before is not None:
                watch.measure(before, watch.count(), switches)
            # (a torn walk was walked again already)
            stacks = process.sample_threads(still, running, due, list(active) + woke)
            self._next_full_round = now + FULL_ROUND_EVERY_NS
        if not (quiet and not active and self._rss is not None):
            self._rss = self._process_stats.rss_bytes()
        rss = self._rss
        seen = set()
        self._states = process.capture.states if process.capture is not None else {}
        for thread_stack in stacks or ():
            seen.add(thread_stack.native_tid)
            self._sample(thread_stack, now, t, rss)
        if quiet and dormant:
            rows = self._dormant_rows or self._dormant_columns()
            self.sink.samples(t, process.pid, rss, rows)
            self.stats.samples += len(dormant)
        expected = active if quiet else _threads_alive(active, dormant)
        if len(seen) != len(expected):
            for tid, thread in list(expected.items()):
                if tid not in seen:
                    self._thread_ended(tid, thread, t)
        if self._watch is not None:
            self._sort_dormant(woke, now)
            if process.native is not None and process.capture is not None \
                    and now >= self._next_rest:
                self._rest_dormant(now)
        if self.resolver.has_pending and now >= self._next_settle:
            self._next_settle = now + SETTLE_EVERY_NS
            self.resolver.settle()

    def _holding_flush(self, now: int) -> bool:
        """Whether the writer's flush waits, at most ``FLUSH_HOLD_NS``, for the line helper to
        decode the units of stacks defined without lines: written, they would stay so.  With
        the helper done, those stacks are given their lines first."""
        native = self.process.native
        if native is not None and self.resolver.has_pending:
            if native.lines.working:
                if self._flush_held_since is None:
                    self._flush_held_since = now
                if now - self._flush_held_since < FLUSH_HOLD_NS:
                    return True
            else:
                self.resolver.settle()
        self._flush_held_since = None
        return False

    def _refresh_active(self, still, need_cpu):
        """Read the active threads' /proc figures (CPU since the last round, state, switches);
        add those found still to ``still``; return the sum of their switch counts."""
        items = self._active.items()
        if need_cpu:
            # The sampler moves as soon as a thread is found queued for its CPU, not after
            # reading them all, so that thread waits for fewer reads; those that were running
            # at the last round go first (by the kernel's trace, though, the thread found
            # there is most often the next GIL holder, asleep at the last round).
            items = sorted(items, key=_asleep_last_round)
            busy = set()
        switches = running = 0
        for tid, thread in items:
            stats = thread.stats
            thread.cpu_delta = stats.refresh(need_cpu=need_cpu)
            switches += stats.switches
            if stats.still:
                still.add(tid)
            if stats.running:
                running += 1
                if need_cpu:
                    busy.add(stats.cpu)
                    self.step_aside.check(busy)
        self.target_running = running
        return switches

    def _sample(self, thread_stack, now, t, rss):
        """Hand the sink one thread's sample: its stack id, CPU, state and wait cause."""
        resolver = self.resolver
        tid = thread_stack.native_tid
        if thread_stack.read_ns:  # walked, not kept: see sample_round
            t = thread_stack.read_ns - self.origin_ns
            if not thread_stack.copied:
                self.stats.walked += 1
                self.stats.reread += thread_stack.reread
        thread = self._threads.get(tid)
        if thread is None or thread.missing:
            thread = self._thread_started(thread_stack, t)  # (a copied stack is older)
        if not thread.named and now >= thread.next_name_try:
            self._try_name(thread, thread_stack, now)
            if tid in self._dormant:
                self._dormant_names_due = 0  # found again in _sort_dormant
        flags = syscall = wchan = 0
        if thread_stack.holds_gil:
            flags |= SampleFlag.GIL
        # (a copied stack is of a moment the thread ran, see PythonProcess._copied_now, or
        # of the round's moment, where the thread's switches are recorded)
        state = self._states.get(tid) if thread_stack.copied else None
        if state == SLEPT or state is None and not thread.stats.running \
                and not thread_stack.copied:
            flags |= SampleFlag.IDLE
            call, channel = thread.stats.cause
            if call is not None:
                syscall = resolver.string_id(call) + 1
            if channel is not None:
                wchan = resolver.string_id(channel) + 1
        if thread_stack.torn:
            flags |= SampleFlag.TORN
        frames = thread_stack.frames
        kernel = thread.stats.kernel_frames  # () unless asked for, and asleep
        task = None
        if thread_stack.task and self.process.tasks is not None:
            task = self.process.tasks.name(thread_stack.task)
        native = None
        if self.process.native is not None and not thread_stack.torn:
            native = self._native_placed(thread_stack, thread)
        if frames is thread.last_frames and kernel is thread.last_kernel \
                and task == thread.last_task and not thread_stack.in_gc \
                and native is thread.last_native:
            stack_id = thread.last_stack_id  # a stack kept whole by the walker: no hashing
        else:
            thread.last_native = native
            stack_id = resolver.stack_id(frames, thread_stack.in_gc, kernel, task, native,
                                         thread_stack.verified)
            if stack_id is None:
                flags |= SampleFlag.TORN
                stack_id = resolver.empty_stack_id()
            elif not thread_stack.in_gc:
                thread.last_frames, thread.last_kernel = frames, kernel
                thread.last_task, thread.last_stack_id = task, stack_id
        if flags & SampleFlag.TORN:
            self.stats.errors += 1  # a sample, torn: counted once (spec: a subset of samples)
        self.sink.sample(t, self.process.pid, tid, stack_id, thread.cpu_delta, rss, flags,
                         syscall, wchan)
        row = (stack_id, flags, syscall, wchan)
        if row != thread.row:
            thread.row = row
            if tid in self._dormant:
                self._dormant_rows = None
        thread.cpu_delta = 0  # a second thread state with the same TID gets none of it
        self.stats.samples += 1

    def _native_placed(self, thread_stack, thread):
        """The native frames of a sample, placed among its Python frames (see
        spyrec.nativestacks), or None: a running thread's from the copy of its stack made with
        its Python frames, a sleeping thread's read from outside (it holds still: one that
        did not run since keeps them).  A thread found running whose copy did not come may have
        stopped before its interrupt (woken from a nap, it waits for the GIL): asleep now, it
        is read from outside too, its walk and its native stack both of its wait."""
        process = self.process
        stats = thread.stats
        tid = thread_stack.native_tid
        regs = runs = None
        if thread_stack.copied or stats.running and not thread_stack.frames:
            # (running C code alone, starting or collecting garbage as the interpreter ends:
            # its native stack as copied at its latest interrupt, which copied no Python frame)
            regs = process.capture.user_stacks.get(tid) if process.capture is not None else None
            runs = thread_stack.runs
        else:
            if not stats.running:
                sp_ip = stats.user_sp_ip
                if sp_ip is not None and stats.still and thread.last_native is not None \
                        and not thread.provisional and thread_stack.frames is thread.last_frames:
                    return thread.last_native
            else:
                sp_ip = stats.sp_ip_now() if thread_stack.frames else None
            if sp_ip is not None:
                regs = process.native.asleep(tid, *sp_ip, stats.sp_ip_now)
                if regs is not None:  # (the walk checked against its chain as it holds still)
                    runs = thread_stack.runs or process.still_runs(tid, thread_stack.frames)
        placed = process.native.frames(regs, runs or (), len(thread_stack.frames))
        thread.provisional = awaits_lines(placed)
        return placed

    def _quiet(self, watch, switches):
        """Whether no dormant thread ran since it was last read, ``switches`` being the sum
        of the active threads' counts read this round.  When the total differs, either an
        active thread was switched in after its count was read (their counts, read again,
        have moved: then the check is made again with them, a few times) or another did."""
        for _ in range(QUIET_RETRIES):
            if watch.quiet(watch.count(), switches + self._dormant_switches):
                return True
            again = sum(thread.stats.peek_switches() for thread in self._active.values())
            if again == switches:
                return False
            switches = again
        return watch.quiet(watch.count(), switches + self._dormant_switches)

    def _watch_for(self, dormant):
        """The process's switch count when some thread is dormant; None where the kernel does
        not give it (no thread is ever dormant then: every thread is read every round)."""
        if not self._watch_tried:
            self._watch_tried = True
            self._watch = DormantWatch.open(self.process.pid)
        return self._watch if dormant else None

    def _rest_dormant(self, now):
        """With native frames, stop following the threads dormant for ``REST_AFTER_NS`` (a
        pool's idle workers): each one's events pin two rings of 256 KiB.  One found to have
        run is followed again at once, as a new thread is (see StackCapture.rest)."""
        self._next_rest = now + REST_CHECK_NS
        self.process.capture.rest([tid for tid, thread in self._dormant.items()
                                   if now - thread.dormant_since >= REST_AFTER_NS])

    def _sort_dormant(self, woke, now):
        """Move the threads that ran (``woke``: TIDs) among the active ones, and those found
        still ``DORMANT_AFTER`` times in a row, their last sample whole, among the dormant."""
        active, dormant = self._active, self._dormant
        changed = bool(woke)
        for tid in woke:
            thread = self._undormant(tid)
            if thread is not None and not thread.missing:
                active[tid] = thread
        for tid, thread in list(active.items()):
            if (thread.stats.still_count >= DORMANT_AFTER and thread.row is not None
                    and not thread.row[1] & SampleFlag.TORN and thread.stats.switches
                    and not thread.provisional):
                del active[tid]
                dormant[tid] = thread
                thread.dormant_since = now
                thread.counted = thread.stats.switches
                self._dormant_switches += thread.counted
                changed = True
        if changed:
            self._dormant_rows = None
        if changed or not self._dormant_names_due:
            self._dormant_names_due = min(
                (thread.next_name_try for thread in dormant.values() if not thread.named),
                default=float("inf"))

    def _dormant_columns(self):
        """The dormant threads' last samples as ``SpyWriter.samples`` columns."""
        dormant = self._dormant
        rows = [thread.row for thread in dormant.values()]
        self._dormant_rows = (list(dormant), [row[0] for row in rows], [row[1] for row in rows],
                              [row[2] for row in rows], [row[3] for row in rows])
        return self._dormant_rows

    def _undormant(self, tid):
        """Take thread ``tid`` out of the dormant ones; return it (None when it was not)."""
        thread = self._dormant.pop(tid, None)
        if thread is not None:
            self._dormant_switches -= thread.counted
            self._dormant_rows = None
        return thread

    def _thread_ended(self, tid, thread, t):
        thread.missing = True
        thread.stats.close()
        self._active.pop(tid, None)
        self._undormant(tid)
        self.sink.thread(pid=self.process.pid, tid=tid, end_ns=t)

    def _thread_started(self, thread_stack, t):
        tid = thread_stack.native_tid
        old = self._threads.get(tid)
        if old is not None:
            old.stats.close()
            self._undormant(tid)
            if self.process.capture is not None:
                self.process.capture.wake(tid)
        thread = _Thread(ThreadStats(self.proc_root, self.process.pid, tid, self.kernel,
                                     self.process.native is not None),
                         thread_stack.python_thread_id)
        self._threads[tid] = thread
        self._active[tid] = thread
        if old is not None and old.missing and old.py_thread_id == thread.py_thread_id:
            # The same thread, missed by rounds that could not read the whole thread list (a
            # state freed under the walk, the process briefly unreadable): its record goes on,
            # name and start kept, its end taken back, and the CPU time it used meanwhile
            # counted in this sample.
            for name in ("named", "os_name", "os_name_read", "name_tries", "next_name_try"):
                setattr(thread, name, getattr(old, name))
            thread.stats.last_cpu_ns = old.stats.last_cpu_ns
            thread.cpu_delta = thread.stats.refresh(read_after=False)
            self.sink.thread(pid=self.process.pid, tid=tid, end_ns=None)
            return thread
        # The baseline (the first sample's CPU delta is 0) and state; its stack was read before.
        thread.stats.refresh(read_after=False)
        self.sink.thread(pid=self.process.pid, tid=tid, py_thread_id=thread.py_thread_id,
                         name=None, start_ns=t, end_ns=None)
        return thread

    def _try_name(self, thread, thread_stack, now):
        """Look for the thread's ``threading`` name; meanwhile its kernel name stands in."""
        tid = thread_stack.native_tid
        name = thread_stack.name
        if name is None:
            name = self.process.naming.threading_name(thread_stack.python_thread_id, tid)
        if name is not None:
            thread.named = True
            if name != thread.os_name:
                self.sink.thread(pid=self.process.pid, tid=tid, name=name)
            return
        tries = thread.name_tries = thread.name_tries + 1
        if tries > NAME_EAGER_TRIES:
            delay = NAME_BACKOFF_NS << min(tries - NAME_EAGER_TRIES - 1, 10)
            thread.next_name_try = now + min(delay, NAME_RETRY_NS)
        # The kernel's name (a /proc read) at the first try that finds Python frames, and at
        # each spaced one.  Before its first frame a thread has the name of the thread that
        # made it (Linux copies it; CPython 3.14+ sets its own in Thread._bootstrap_inner).
        first = not thread.os_name_read and thread_stack.frames
        if thread.os_name is None and tid and (first or tries > NAME_EAGER_TRIES):
            thread.os_name_read = True
            thread.os_name = self.process.naming.os_thread_name(tid)
            if thread.os_name is not None:
                self.sink.thread(pid=self.process.pid, tid=tid, name=thread.os_name)

    def cpu_ns(self, tid: int) -> int:
        """The CPU time thread ``tid`` has used so far, as its last sample read it (0 unknown)."""
        thread = self._threads.get(tid)
        return (thread.stats.last_cpu_ns or 0) if thread is not None else 0

    def finish(self, end_ns: Optional[int] = None) -> None:
        """Close every thread still open at the end (``end_ns``, since the origin; the
        recording's end by default) and release /proc files."""
        end = self.stats.end_ns if end_ns is None else end_ns
        self.stats.copied_stacks += self.process.walker.captured_stacks
        self.process.walker.captured_stacks = 0
        native = self.process.native
        if native is not None:
            self.stats.native_stacks += native.merged
            self.stats.native_unmerged += native.unmerged
            native.merged = native.unmerged = 0
            if self.resolver.has_pending:
                native.lines.wait_idle(LINES_AT_END_S)
                self.resolver.settle()
        for tid, thread in self._threads.items():
            if not thread.missing:
                thread.stats.close()
                self.sink.thread(pid=self.process.pid, tid=tid, end_ns=end)
        self._threads, self._active, self._dormant = {}, {}, {}
        self._process_stats.close()
        if self._watch is not None:
            self._watch.close()
            self._watch = None
