"""Python stacks copied in the target's own context, at a CPU-clock interrupt, by an eBPF program.

A walk from another process reads one frame after another while the target runs on: a stack
that changes every microsecond (generators made and freed at every level, short calls) comes
out with frames of different moments.  A perf event interrupts a running thread between two of
its instructions; an eBPF program run there (attached to a CPU-clock event of each of the
target's threads) follows the thread's frame chain while the thread cannot move, and
hands the frames' raw bytes to the recorder through a ring buffer.  The target is not stopped
beyond that interrupt (its cost bounds the copies' rate: ``MIN_PERIOD_NS``), and nothing is
injected into it.

The program is generated for the target's layout: where its thread state keeps the innermost
frame, where a frame keeps its link, and how many bytes of each frame the walker parses (the
same fields, ``FrameOffsets``).  Which thread state belongs to which kernel TID comes from the
recorder's own walks (``watch``).  A capture is decoded into the walker's (codes, offsets)
by ``decode``; code objects are resolved as usual, from the target's memory, except while
the target makes code objects where others were freed: a copy then also takes each frame's
code object's identity, to name the frame after the one it ran (``StackCapture.identify``).

A round reads the rest of a sample (the thread's state in /proc, the GIL, the collector, the
asyncio task) up to a copy period after the copy (with native frames, a thread found running
with no copy since the last round is copied at the round: ``drain``).  What changes within
that time is copied with the stack: the collector's flag and the GIL's holder
(``SharedState``).  The asyncio task is not: a stack copied in a task unknown by the round is
walked again (spyrec.walker).  A thread
that is not running holds still, and is walked from outside as before.

Needs root (CAP_BPF and CAP_PERFMON) and Linux 5.8+; ``StackCapture.open`` raises
``BpfUnavailable`` otherwise, and the recorder walks live as before.
"""

import itertools
import operator
import os
import struct
import time
from collections import deque
from typing import (AbstractSet, Any, Collection, Deque, Dict, List, NamedTuple, Optional,
                    Sequence, Set, Tuple)

from spyrec import bpf, perfstacks
from spyrec.bpf import R0, R1, R2, R3, R6, R7, R8, R9, R10, Assembler, BpfUnavailable
from spyrec.chunkwalk import MAX_OFFSET, MIN_OFFSET
from spyrec.codeobjects import identity_window
from spyrec.layouts.base import FRAME_OWNED_BY_GENERATOR, Layout
from spyrec.perfstacks import SampleRing, UserStack
from spyrec.process import namespace_pids
from spyrec.switches import IN, SwitchRing
from spyrec.walkcommon import READ_ERRORS, U64

#: Frames one capture holds; a deeper stack has the rest read from outside (``completed``).
#: A test runner's or a web framework's stacks run past a hundred frames; the program is
#: unrolled, one step a frame.
MAX_FRAMES = 256
#: Ring buffer bytes (a power of two, whole pages): room for over a hundred copies of the
#: deepest stacks, a few rounds' worth (each round drains it).
RING_BYTES = 1 << 22
#: Thread states the program knows at once.
MAX_THREADS = 16384
#: The program's name, as ``bpftool prog`` lists it.
PROGRAM_NAME = "spyrec_stacks"
#: The fastest a thread is copied (its CPU-clock period floor).  The interrupt
#: is what a copy costs the thread it stops, not the program: in a virtual machine about
#: 20 µs each, a null program's as much as ours (docs/benchmarks.md, "What an interrupt
#: costs").  At 1 kHz that is a couple of percent; past 500 Hz a round may find no copy
#: (one a round at 1 kHz, fewer beyond), and its running threads are read from outside.
MIN_PERIOD_NS = 1_000_000
#: How many copy periods after it a thread's newest copy still stands for it at a round that
#: finds it on a CPU (see ``StackCapture.at``): a thread that runs so little is read from
#: outside.
KEPT_COPY_PERIODS = 16
#: ``SPYREC_SWITCHES=0`` in the environment: rounds read how each thread is from /proc alone.
SWITCHES_ENV = "SPYREC_SWITCHES"
#: With native frames (``spyrec --native``), which only copies give, a thread found running
#: with no copy since the last round is copied at the round: a second event of the thread,
#: off otherwise, is armed for one interrupt this much of its CPU time later
#: (``PERF_EVENT_IOC_REFRESH``): the shortest CPU-clock period the kernel allows
#: (kernel/events/core.c, ``perf_swevent_start_hrtimer``), so that a thread that runs only a
#: little longer is copied before it sleeps.  A thread that runs now and then, or that has
#: just started, has its copy all the same.  An armed copy costs the thread about twice a
#: timed one (the inter-processor interrupt that arms it, and the one that turns it off
#: after), so a thread that runs all along is copied by its timed event, as without native
#: frames (docs/benchmarks.md, "What an interrupt costs").
ARM_PERIOD_NS = 10_000
#: Armed copies of one thread come at most once in this long on average, and two at most this
#: close (a round late, then one on time): at most 1,250 interrupts a second; a faster round
#: that finds no arm left has no native frames for the thread.
NATIVE_MIN_PERIOD_NS = 800_000
#: With native frames, how long a round waits for the copies it armed, as a share of the
#: sampling interval: a thread found running may be waiting for a CPU.  Waiting asleep gives a
#: CPU back to a target that shares it.
NATIVE_PATIENCE = 0.5
#: The step of that wait (seconds).
WAIT_STEP_S = 0.00002
#: After this long (seconds) without the copy of a thread armed, it is armed once more: now and
#: then an arm brings no interrupt (a thread that runs all along, about one round in a hundred
#: at 100 Hz), where one comes within 0.2 ms of an arm otherwise.
REARM_AFTER_S = 0.0003

# Record layout: header, then MAX_FRAMES slots of (frame address, the frame's first bytes),
# then MAX_FRAMES copies of a code object's identity (``identify``), each of its slot's frame.
#: tid, frames copied, ktime ns, tstate, scratch, status, the collector's flag, the GIL's last
#: holder and locked state, whether the frames' code objects' identities were copied
HEADER = struct.Struct("<IIQQQIiQiI")
SLOT_AT = HEADER.size
SCRATCH_AT, STATUS_AT, COLLECTING_AT, HOLDER_AT, LOCKED_AT, IDENTIFIED_AT = 24, 32, 36, 40, 48, 52
#: Status: the chain was followed to its end; a read failed; deeper than MAX_FRAMES.
WHOLE, FAULT, TRUNCATED = 0, 1, 2

#: A copy and the kernel's sample of one interrupt are stamped this close: a microsecond or two
#: (6.18 takes the sample's time just before the program runs, ``bpf_overflow_handler`` in
#: kernel/events/core.c; older kernels just after).  Two interrupts of one thread this close
#: are mostly one handler's, of one moment: the thread did not run between them.
SAME_INTERRUPT_NS = 20_000

#: Set in the TID of a copy made as the thread left its CPU (its context-switch event).
SWITCHED_OUT = 1 << 31
#: A copy made as a thread left its CPU and the kernel's record of that switch are stamped
#: this close (kernel/events/core.c: the event's program runs just before the record is made).
SAME_SWITCH_NS = 20_000
#: How long before the kernel's record of a switch the copy made as the thread left may be
#: stamped: with native frames the kernel writes its sample of the thread's registers and
#: stack in between (20-40 µs seen for 32 KiB here).
SWITCH_COPY_LEAD_NS = 100_000
#: Copies of each kind kept per thread, the newest: enough for the moment of the last round.
COPIES_KEPT = 8

_U32 = _TID = struct.Struct("<I")



class Capture(NamedTuple):
    """One thread's frames as the program copied them: ``frames`` holds a slot per frame,
    innermost first, each its address and then its first bytes (see ``build_program``)."""

    tid: int
    time_ns: int  # CLOCK_MONOTONIC, as time.monotonic_ns()
    tstate: int  # the thread state whose frames these are
    status: int
    collecting: int  # the interpreter's gc.collecting then
    holder: int  # the GIL's last holder then, and whether it was locked
    locked: int
    frames: bytes
    #: Whether ``identities`` were copied (see ``StackCapture.identify``).
    identified: int = 0
    #: The identity of each frame's code object (``code_window``), as many as were copied.
    identities: bytes = b""


def _frame_bytes(layout: Layout) -> int:
    return (layout.frame.size + 7) & ~7


def code_window(layout: Layout) -> Tuple[int, int]:
    """(offset in a code object, bytes) of what a copy takes of a frame's code object: the
    fields that tell one code object from another (``identity_window``), in whole words."""
    at, size = identity_window(layout)
    return at, (size + 7) & ~7


class SharedState(NamedTuple):
    """Where the main interpreter keeps what a sample reads beside a thread's stack, copied
    with it (0: not known): ``gc.collecting``, and the GIL's ``last_holder`` and ``locked``."""

    collecting: int = 0
    holder: int = 0
    locked: int = 0


def build_program(layout: Layout, tgid: int, threads_fd: int, ring_fd: int, identify_fd: int,
                  shared: SharedState = SharedState(), sample: bool = False,
                  switched_out: bool = False) -> bytes:
    """The capture program for one target (its TGID as the kernel sees it).  ``sample``:
    after a copy, the kernel also writes the event's own sample (spyrec.perfstacks).
    ``switched_out``: the program of the thread's context-switch event, its copies marked so
    (``SWITCHED_OUT``).
    ``identify_fd``: a one-entry array whose u32, when not 0, has each frame's code object's
    identity copied too (see ``StackCapture.identify``)."""
    fr, ts = layout.frame, layout.thread
    frame_bytes = _frame_bytes(layout)
    slot = 8 + frame_bytes
    window_at, window_bytes = code_window(layout)
    identities_at = SLOT_AT + MAX_FRAMES * slot
    record = identities_at + MAX_FRAMES * window_bytes
    a = Assembler()
    a.call(bpf.GET_CURRENT_PID_TGID)
    a.mov(R7, R0)
    a.rsh_imm(R7, 32)
    a.jump_if_imm("!=", R7, tgid, "out")
    a.mov(R7, R0)
    a.lsh_imm(R7, 32)
    a.rsh_imm(R7, 32)  # the TID
    a.store(R10, -8, R7, 4)
    a.mov(R2, R10)
    a.add_imm(R2, -8)
    a.load_map(R1, threads_fd)
    a.call(bpf.MAP_LOOKUP_ELEM)
    a.jump_if_imm("==", R0, 0, "out")  # a thread the recorder has not walked yet
    a.load(R8, R0, 0)  # its thread state
    a.load_map(R1, ring_fd)
    a.mov_imm(R2, record)
    a.mov_imm(R3, 0)
    a.call(bpf.RINGBUF_RESERVE)
    a.jump_if_imm("==", R0, 0, "out")  # full: the recorder is behind, it walks live
    a.mov(R9, R0)
    a.store(R9, 0, R7, 4)
    if switched_out:
        a.store_imm(R9, 3, SWITCHED_OUT >> 24, 1)
    # R7 from here: whether to copy each frame's code object's identity
    a.store_imm(R10, -16, 0, 4)
    a.mov(R2, R10)
    a.add_imm(R2, -16)
    a.load_map(R1, identify_fd)
    a.call(bpf.MAP_LOOKUP_ELEM)
    a.mov_imm(R7, 0)
    a.jump_if_imm("==", R0, 0, "identify")
    a.load(R7, R0, 0, 4)
    a.label("identify")
    a.store(R9, IDENTIFIED_AT, R7, 4)
    a.store(R9, 16, R8)
    a.store_imm(R9, STATUS_AT, WHOLE, 4)
    a.call(bpf.KTIME_GET_NS)
    a.store(R9, 8, R0)
    # the state shared with the other threads, as it stands while this one is interrupted
    for at, address, size, absent in ((COLLECTING_AT, shared.collecting, 4, 0),
                                      (HOLDER_AT, shared.holder, 8, 0),
                                      (LOCKED_AT, shared.locked, 4, -1)):
        a.store_imm(R9, at, absent, size)
        if address:
            a.mov(R1, R9)
            a.add_imm(R1, at)
            a.mov_imm(R2, size)
            a.load_imm64(R3, address)
            a.call(bpf.PROBE_READ_USER)
    # the innermost frame: tstate->frame (<=3.10), ->cframe->current_frame (3.11/3.12) or
    # ->current_frame (3.13+)
    a.mov(R3, R8)
    a.add_imm(R3, ts.frame)
    a.mov_imm(R8, 0)  # frames copied
    a.mov(R1, R9)
    a.add_imm(R1, SCRATCH_AT)
    a.mov_imm(R2, 8)
    a.call(bpf.PROBE_READ_USER)
    a.jump_if_imm("!=", R0, 0, "fault")
    if layout.thread_frame_kind == "cframe":
        assert layout.cframe is not None
        a.load(R3, R9, SCRATCH_AT)
        a.jump_if_imm("==", R3, 0, "submit")
        a.add_imm(R3, layout.cframe.current_frame)
        a.mov(R1, R9)
        a.add_imm(R1, SCRATCH_AT)
        a.mov_imm(R2, 8)
        a.call(bpf.PROBE_READ_USER)
        a.jump_if_imm("!=", R0, 0, "fault")
    a.load(R3, R9, SCRATCH_AT)
    # R6: the slot being written (an identity's offset in the record outgrows an instruction's)
    a.mov(R6, R9)
    a.add_imm(R6, SLOT_AT)
    for i in range(MAX_FRAMES):
        if i:
            a.add_imm(R6, slot)
        a.jump_if_imm("==", R3, 0, "submit")
        a.store(R6, 0, R3)
        a.mov(R1, R6)
        a.add_imm(R1, 8)
        a.mov_imm(R2, frame_bytes)
        a.call(bpf.PROBE_READ_USER)
        a.jump_if_imm("!=", R0, 0, "fault")
        # the identity of the frame's code object as it runs now, which may be freed and
        # another made at its address before the round names the frame (a read that fails,
        # as of a frame with no code object, leaves zeros: nothing copied)
        a.jump_if_imm("==", R7, 0, "identified %d" % i)
        a.load(R3, R6, 8 + fr.code)
        if layout.executable_tag_mask:
            a.and_imm(R3, ~layout.executable_tag_mask)
        a.add_imm(R3, window_at)
        a.mov(R1, R6)
        a.add_imm(R1, identities_at + i * window_bytes - (SLOT_AT + i * slot))
        a.mov_imm(R2, window_bytes)
        a.call(bpf.PROBE_READ_USER)
        a.label("identified %d" % i)
        a.mov_imm(R8, i + 1)
        a.load(R3, R6, 8 + fr.previous)
    a.jump_if_imm("==", R3, 0, "submit")
    a.store_imm(R9, STATUS_AT, TRUNCATED, 4)
    a.jump("submit")
    a.label("fault")
    a.store_imm(R9, STATUS_AT, FAULT, 4)
    a.label("submit")
    a.store(R9, 4, R8, 4)
    a.mov(R1, R9)
    a.mov_imm(R2, bpf.RINGBUF_NO_WAKEUP)  # the recorder reads the ring at its rounds
    a.call(bpf.RINGBUF_SUBMIT)
    a.label("out")
    # with native frames, non-zero: the kernel writes its sample, and an event armed for one
    # interrupt is spent (6.10+ counts it only then: kernel/events/core.c,
    # __perf_event_overflow); the sample of a thread not copied goes unused
    a.mov_imm(R0, 1 if sample else 0)
    a.exit()
    return a.code()


def _kernel_tgid(pid: int) -> Optional[int]:
    """The target's TGID in the kernel's own (initial) PID namespace, which the program sees;
    None when ours is a nested one (the program would see other numbers)."""
    # (no NSpid line: a kernel too old to say, with one PID namespace in practice)
    return pid if len(namespace_pids(os.getpid())) <= 1 else None


class StackCapture:
    """The capture program on a CPU-clock event of each of one target's Python threads, and
    its ring buffer.  An event of the thread, not of every CPU: no other process takes an
    interrupt, nor an idle CPU (see ``MIN_PERIOD_NS`` for what one costs)."""

    def __init__(self, layout: Layout, tgid: int, rate_hz: float,
                 shared: SharedState = SharedState(), native: bool = False,
                 switches: bool = True):
        self._native = native
        #: {tid: its user registers and stack} at the interrupt of the newest capture the
        #: last ``drain`` gave, with ``native``.
        self.user_stacks: Dict[int, UserStack] = {}
        self._rings: Dict[int, SampleRing] = {}
        self._fds: List[int] = []
        self._ring: Optional[bpf.RingBuffer] = None
        self._known: Dict[int, int] = {}  # tid -> tstate, as the program knows them
        self._events: Dict[int, int] = {}  # tid -> its CPU-clock event
        self._armed: Dict[int, int] = {}  # tid -> its event armed at a round (native frames)
        #: {tid: its newest capture} drained by ``arm`` for this round's ``drain``
        self._pending: Dict[int, Capture] = {}
        self._switch_prog: Optional[int] = None
        self._switch_ring: Optional[bpf.RingBuffer] = None
        self._switch_events: Dict[int, int] = {}  # tid -> its context-switch event
        self._switch_rings: Dict[int, SwitchRing] = {}
        #: with native frames, tid -> the event copying it as it leaves its CPU, whose ring
        #: holds the kernel's samples of those moments (its switch records come from a dummy
        #: event in ``_switch_events``: see ``_follow_switches``)
        self._switch_copiers: Dict[int, int] = {}
        self._switch_samples: Dict[int, SampleRing] = {}
        #: tid -> its newest copies made at its timed interrupts, and as it left its CPU
        self._timed: Dict[int, Deque[Capture]] = {}
        self._left: Dict[int, Deque[Capture]] = {}
        #: threads not followed while they sleep (``rest``), and whether one woke since the
        #: last ``watch``
        self._resting: Set[int] = set()
        self._woken = False
        #: {tid: IN, PREEMPTED or SLEPT}: how ``at`` found each thread at the round's moment
        self.states: Dict[int, int] = {}
        #: with native frames, {tid: the kernel's sample of the copy ``at`` took, or None},
        #: for the ``drain`` that follows
        self._moment_stacks: Dict[int, Optional[UserStack]] = {}
        try:
            self._threads_fd = self._keep(bpf.create_map(bpf.MAP_TYPE_HASH, 4, 8, MAX_THREADS))
            self._ring_fd = self._keep(bpf.create_map(bpf.MAP_TYPE_RINGBUF, 0, 0, RING_BYTES))
            self._ring = bpf.RingBuffer(self._ring_fd, RING_BYTES)
            self._identify_fd = self._keep(bpf.create_map(bpf.MAP_TYPE_ARRAY, 4, 4, 1))
            self._identifying = False
            self._prog = self._keep(bpf.load_program(
                build_program(layout, tgid, self._threads_fd, self._ring_fd, self._identify_fd,
                              shared, native),
                PROGRAM_NAME))
            if switches and os.environ.get(SWITCHES_ENV, "1") != "0":
                # (a ring of their own: copies made at every switch of busy threads must not
                # take the room of the timed ones)
                switch_ring_fd = self._keep(bpf.create_map(bpf.MAP_TYPE_RINGBUF, 0, 0,
                                                           RING_BYTES))
                self._switch_ring = bpf.RingBuffer(switch_ring_fd, RING_BYTES)
                self._switch_prog = self._keep(bpf.load_program(
                    build_program(layout, tgid, self._threads_fd, switch_ring_fd,
                                  self._identify_fd, shared, native, switched_out=True),
                    PROGRAM_NAME))
            self._period = max(MIN_PERIOD_NS, int(1e9 / rate_hz))
            #: Seconds ``drain`` waits at most for the copies it armed (see NATIVE_PATIENCE).
            self.patience_s = NATIVE_PATIENCE / rate_hz if native else 0.0
            #: tid -> when its next arm is due (ns), as in the generic cell rate algorithm: a
            #: thread is armed up to one ``NATIVE_MIN_PERIOD_NS`` before then
            self._arm_due: Dict[int, int] = {}
            self._round_arms: Dict[int, int] = {}  # tid -> when armed, this round (ns)
            self._follow(tgid)  # the main thread: whether the kernel allows it at all
        except (BpfUnavailable, OSError) as exc:
            self.close()
            raise BpfUnavailable(str(exc)) from None
        self._slot = 8 + _frame_bytes(layout)
        self._identities_at = SLOT_AT + MAX_FRAMES * self._slot
        self._identity_bytes = code_window(layout)[1]

    def _follow(self, tid: int) -> None:
        self._events[tid] = bpf.open_cpu_clock(tid, self._period, self._prog,
                                               *self._sampled())
        if self._native:
            try:
                self._rings[tid] = SampleRing(self._events[tid])
                self._armed[tid] = bpf.open_cpu_clock(tid, ARM_PERIOD_NS, self._prog,
                                                      *self._sampled())
                bpf.set_output(self._armed[tid], self._events[tid])
            except (BpfUnavailable, OSError) as exc:
                self._unfollow(tid)
                raise BpfUnavailable("a thread's second perf event: %s" % exc) from None
        if self._switch_prog is not None:
            try:
                self._follow_switches(tid, self._switch_prog)
            except (BpfUnavailable, OSError):
                self._close_switches(tid)  # (its rounds read /proc as before)
        bpf.enable(self._events[tid])  # (native: the armed one by ``arm``)

    def _follow_switches(self, tid: int, prog: int) -> None:
        """Record the switches of thread ``tid`` and copy it each time it leaves its CPU.  With
        native frames the kernel's sample of its registers and stack at each of those moments
        goes to a ring written backward, as the timed copies' do (spyrec.perfstacks), and the
        switch records to a ring of their own, read forward (spyrec.switches): one ring for
        both would keep a few switches' worth of records behind each 32 KiB sample."""
        if self._native:
            copier = self._switch_copiers[tid] = bpf.open_switch_samples(
                tid, prog, perfstacks.SAMPLE_TYPE, perfstacks.REGS_MASK, perfstacks.STACK_BYTES)
            self._switch_samples[tid] = SampleRing(copier)
            fd = self._switch_events[tid] = bpf.open_switch_records(tid)
        else:
            fd = self._switch_events[tid] = bpf.open_switches(tid, prog)
        ring = self._switch_rings[tid] = SwitchRing(fd)
        bpf.enable(fd)
        ring.started()
        if self._native:
            bpf.enable(copier)

    def _close_switches(self, tid: int) -> None:
        _close_for(tid, (self._switch_rings, self._switch_samples),
                   (self._switch_events, self._switch_copiers))
        self._timed.pop(tid, None)
        self._left.pop(tid, None)

    def _sampled(self) -> Tuple[int, int, int, bool, int]:
        """The kernel's sample at each copy: with native frames the user registers and stack,
        written backward (see perfstacks.SampleRing), waking no poller before a whole ring is
        written (the recorder reads the ring at its rounds, and a wake-up is an interrupt of
        the thread); none otherwise."""
        if self._native:
            return (perfstacks.SAMPLE_TYPE, perfstacks.REGS_MASK, perfstacks.STACK_BYTES, True,
                    perfstacks.RING_BYTES)
        return 0, 0, 0, False, 0

    def _unfollow(self, tid: int) -> None:
        self._close_switches(tid)
        _close_for(tid, (self._rings,), (self._armed, self._events))
        self._arm_due.pop(tid, None)

    def _keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    @classmethod
    def open(cls, layout: Layout, pid: int, rate_hz: float,
             shared: SharedState = SharedState(), native: bool = False,
             switches: bool = True) -> "StackCapture":
        tgid = _kernel_tgid(pid)
        if tgid is None:
            raise BpfUnavailable("spyrec runs in a nested PID namespace")
        return cls(layout, tgid, rate_hz, shared, native, switches)

    def watch(self, tstates: Dict[int, int]) -> List[int]:
        """Tell the program each thread's state ({kernel TID: tstate}); threads gone are
        forgotten.  The TIDs of the threads followed from now on."""
        if tstates == self._known and not self._woken:
            return []
        self._woken = False
        followed = []
        for tid in set(self._known) - set(tstates):
            bpf.delete_elem(self._threads_fd, _TID.pack(tid))
        for tid in set(self._events) - set(tstates):  # (the main thread's too, if no Python's)
            self._unfollow(tid)
        self._resting.intersection_update(tstates)
        for tid, tstate in tstates.items():
            if self._known.get(tid) != tstate:
                bpf.update_elem(self._threads_fd, _TID.pack(tid), U64.pack(tstate))
            if tid not in self._events and tid not in self._resting:
                try:
                    self._follow(tid)
                    followed.append(tid)
                except BpfUnavailable:
                    pass  # ended since the walk (or out of descriptors): walked from outside
        self._known = dict(tstates)
        return followed

    def rest(self, tids: Collection[int]) -> None:
        """Stop following threads ``tids`` until ``wake``: threads asleep for a while (a pool's
        idle workers) need no copies, read from outside where they hold still, and with
        native frames each one's events pin two rings of 256 KiB.  Their thread states stay
        known to the program; a thread not followed already is left as it is."""
        for tid in tids:
            if tid in self._events:
                self._unfollow(tid)
                self._resting.add(tid)

    def wake(self, tid: int) -> None:
        """Follow thread ``tid``, if ``rest`` stopped following it, again from the next
        ``watch`` (which lists it among the threads followed from then on, as a new one)."""
        if tid in self._resting:
            self._resting.discard(tid)
            self._woken = True

    def identify(self, on: bool) -> None:
        """Have each copy take its frames' code objects' identities too, or not: what names
        a frame after the code object it ran at the copy, where another may have been made
        at its address by the round (see StackWalker.copies_named).  Off, a copy costs the
        thread less: one read fewer a frame."""
        if on != self._identifying:
            try:
                bpf.update_elem(self._identify_fd, _U32.pack(0), _U32.pack(on))
            except BpfUnavailable:
                return  # (copies without: while code objects are replaced, walked from outside)
            self._identifying = on

    def arm(self, tids: Collection[int]) -> None:
        """With native frames, have threads ``tids`` copied at their next interrupt where they
        have no copy since the last round: each one's armed event armed for one, this round,
        as far as ``NATIVE_MIN_PERIOD_NS`` allows.  Called for the threads that ran at the
        last round before this one's reads of /proc, their copies come while those are made
        (also those whose switches are recorded: a thread that ``at`` finds with no copy it
        can take, just started or running now and then, is then not waited for)."""
        if not self._native:
            return
        self._pending.update(self._drain_ring())
        now = time.monotonic_ns()
        for tid in tids:
            fd = self._armed.get(tid)
            due = self._arm_due.get(tid, 0)
            if (fd is None or tid in self._pending or tid in self._round_arms
                    or now < due - NATIVE_MIN_PERIOD_NS):
                continue
            try:
                bpf.refresh(fd)
            except BpfUnavailable:
                continue  # ended since the walk
            self._round_arms[tid] = now
            self._arm_due[tid] = max(due, now) + NATIVE_MIN_PERIOD_NS

    def drain(self, awaited: Collection[int] = (), again: bool = False) -> Dict[int, Capture]:
        """{tid: its newest capture} of the captures the program made since the last call.
        With native frames, the ``awaited`` threads (found running) with none are copied at
        this round (``arm``), and ``drain`` waits up to ``patience_s`` for those copies and
        for the kernel's samples of the copies it has.  ``again``: a second call in one
        round, whose user stacks join the first's."""
        if not self._native:
            newest, self._pending = self._pending, {}
            newest.update(self._drain_ring())
            return newest
        self.arm(awaited)
        armed, self._round_arms = self._round_arms, {}
        newest, self._pending = self._pending, {}
        if not again:
            self.user_stacks = {}
        user_stacks = self.user_stacks

        def copied(tid: int) -> bool:
            """Whether ``tid`` has its copy since the last round, and the kernel's sample of
            that interrupt (written just after the program's copy: it may be a moment
            behind)."""
            capture = newest.get(tid)
            if capture is None:
                return False
            sample = self._rings[tid].sample_at(capture.time_ns, SAME_INTERRUPT_NS)
            if sample is not None:
                user_stacks[tid] = sample
            return sample is not None

        newest.update(self._drain_ring())
        start = time.monotonic()
        missing = [tid for tid in awaited
                   if (tid in armed or tid in newest) and tid in self._rings and not copied(tid)]
        rearmed = False
        while missing and time.monotonic() < start + self.patience_s:
            time.sleep(WAIT_STEP_S)
            newest.update(self._drain_ring())
            missing = [tid for tid in missing if not copied(tid)]
            if missing and not rearmed and time.monotonic() >= start + REARM_AFTER_S:
                rearmed = True
                for tid in missing:
                    if tid in armed and tid not in newest:
                        try:
                            bpf.refresh(self._armed[tid])
                        except BpfUnavailable:
                            pass
        for tid in missing:
            newest.pop(tid, None)
        for tid, capture in newest.items():  # (a thread not awaited: its copy since the last)
            if tid not in user_stacks and tid in self._rings:
                sample = self._rings[tid].sample_at(capture.time_ns, SAME_INTERRUPT_NS)
                if sample is not None:
                    user_stacks[tid] = sample
        for tid, sample in self._moment_stacks.items():  # (the copies ``at`` took win)
            if sample is None:
                user_stacks.pop(tid, None)
            else:
                user_stacks[tid] = sample
        self._moment_stacks = {}
        return newest

    def _drain_ring(self) -> Dict[int, Capture]:
        """{tid: its newest capture} of the records in the ring, which is then emptied.
        Only those are copied out (a thread runs on one CPU at a time: its records come in the
        order they were made)."""
        assert self._ring is not None
        latest: Dict[int, memoryview] = {}
        tracked = self._switch_rings
        # the newest records of each kind of each thread whose switches are recorded
        kept: Dict[Tuple[int, bool], Deque[memoryview]] = {}
        rings = [self._ring] if self._switch_ring is None else [self._ring, self._switch_ring]
        for record in itertools.chain.from_iterable(ring.records() for ring in rings):
            tid = _TID.unpack_from(record)[0]
            left = bool(tid & SWITCHED_OUT)
            tid &= ~SWITCHED_OUT
            if tid in tracked:
                kept.setdefault((tid, left), deque(maxlen=COPIES_KEPT)).append(record)
            if not left:
                latest[tid] = record
        newest = {tid: self._copied(tid, record) for tid, record in latest.items()}
        for (tid, left), records in kept.items():
            into = (self._left if left else self._timed).setdefault(
                tid, deque(maxlen=COPIES_KEPT))
            into.extend(newest[tid] if record is latest.get(tid) else self._copied(tid, record)
                        for record in records)
        for ring in rings:
            ring.consume()
        return newest

    def _copied(self, tid: int, record: memoryview) -> Capture:
        """The Capture of one record of the ring, copied out of it."""
        slot, identity, identities_at = self._slot, self._identity_bytes, self._identities_at
        _, count, time_ns, tstate, _, status, collecting, holder, locked, identified = \
            HEADER.unpack_from(record)
        return Capture(tid, time_ns, tstate, status, collecting, holder, locked,
                       bytes(record[SLOT_AT:SLOT_AT + count * slot]), identified,
                       bytes(record[identities_at:identities_at + count * identity])
                       if identified else b"")

    @property
    def records_switches(self) -> bool:
        """Whether some thread's switches are recorded: its rounds may come at any moment
        (see ``at``)."""
        return bool(self._switch_rings)

    def at(self, moment: int, tids: Collection[int]) -> Dict[int, Capture]:
        """{tid: the copy that shows it at ``moment``} of the threads whose switches are
        recorded (spyrec.switches), and how each one was then in ``states``: on a CPU, its
        newest timed copy made before, which stands for it as well as any (each copy stands
        for the CPU time up to the next, so every moment of its CPU time is as likely to be
        one a round finds it in; one that runs a moment now and then, as a thread waiting for
        the GIL does, is then shown where its last copy found it); off it, preempted or
        asleep, the copy made as it left, which is where it was.  ``tids``: the threads
        wanted.  A thread whose switches are not recorded, whose records do not reach back to
        the moment, or whose copy is missing or older than ``KEPT_COPY_PERIODS`` periods, is
        left out.  Call before ``drain``, which then waits for the copies of the threads left
        out alone (with native frames), and hands out the kernel's samples of the copies
        taken here in ``user_stacks``."""
        found: Dict[int, Capture] = {}
        self.states = {}
        self._pending.update(self._drain_ring())
        for tid in tids:
            taken = self._taken_at(tid, moment)
            if taken is not None:
                found[tid] = taken
        return found

    def left_by(self, moment: int, tids: Collection[int]) -> Dict[int, Capture]:
        """{tid: the copy made as it left its CPU} of the threads ``tids`` that ``at`` finds
        off their CPU at ``moment``, with the kernel's samples of those copies put in
        ``user_stacks`` at once and their states in ``states``: for threads ``drain`` waited
        for in vain in a second call of a round (``again``), which may have been preempted or
        gone to sleep meanwhile (a thread just started waits for the GIL)."""
        self._pending.update(self._drain_ring())
        found: Dict[int, Capture] = {}
        for tid in tids:
            taken = self._taken_at(tid, moment, off_cpu_only=True)
            if taken is not None:
                found[tid] = taken
                sample = self._moment_stacks.pop(tid, None)
                if sample is None:
                    self.user_stacks.pop(tid, None)
                else:
                    self.user_stacks[tid] = sample
        return found

    def _taken_at(self, tid: int, moment: int, off_cpu_only: bool = False
                  ) -> Optional[Capture]:
        """The copy that shows thread ``tid`` at ``moment`` (see ``at``), its state put in
        ``states`` and, with native frames, the kernel's sample of it in ``_moment_stacks``;
        None if there is none to take (or, ``off_cpu_only``, it was on its CPU)."""
        ring = self._switch_rings.get(tid)
        if ring is None:
            return None
        ring.read()
        state = ring.state_at(moment)
        if state is None:
            return None
        kind, since = state
        if kind == IN:
            if off_cpu_only:
                return None
            # (made since the records began: one before may be of a run since ended)
            copy = _newest(self._timed.get(tid), moment)
            earliest = max(moment - KEPT_COPY_PERIODS * self._period, ring.started_ns or 0)
        else:
            copy = _newest(self._left.get(tid), since + SAME_SWITCH_NS)
            earliest = since - SWITCH_COPY_LEAD_NS
        if copy is None or copy.time_ns < earliest:
            return None
        if self._native:
            # the kernel's sample of that copy's moment, of the same interrupt or switch
            samples = self._rings.get(tid) if kind == IN else self._switch_samples.get(tid)
            sample = samples.sample_at(
                copy.time_ns, SAME_INTERRUPT_NS if kind == IN else SAME_SWITCH_NS) \
                if samples is not None else None
            if sample is None and kind == IN:
                return None  # (gone from its ring: ``drain`` waits for one made now)
            self._moment_stacks[tid] = sample
        self.states[tid] = kind
        # Stamped at the round's moment, which it stands for: a copy made as the thread
        # left its CPU holds until it comes back, and a timed one is of a moment up to a
        # copy period before (stamped then, it would stand for the time up to the next
        # sample, longer after the work a thread naps after than after its naps).
        return copy._replace(time_ns=moment)

    def close(self) -> None:
        for tid in list(self._switch_events):
            self._close_switches(tid)
        for ring in self._rings.values():
            ring.close()
        self._rings = {}
        for fd in self._armed.values():
            os.close(fd)
        self._armed = {}
        for buffer in (self._ring, self._switch_ring):
            if buffer is not None:
                buffer.close()
        self._ring = self._switch_ring = None
        for fd in self._fds + list(self._events.values()):
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        self._events = {}


def _close_for(tid: int, rings: Sequence[Dict[int, Any]], events: Sequence[Dict[int, int]]
               ) -> None:
    """Close thread ``tid``'s rings and perf events, each taken out of the dict keeping it."""
    for kept in rings:
        ring = kept.pop(tid, None)
        if ring is not None:
            ring.close()
    for fds in events:
        fd = fds.pop(tid, None)
        if fd is not None:
            os.close(fd)


def _newest(copies: Optional[Deque[Capture]], latest: int) -> Optional[Capture]:
    """The newest of ``copies`` (oldest first) made at or before ``latest``, if any."""
    for copy in reversed(copies or ()):
        if copy.time_ns <= latest:
            return copy
    return None


def _slot_struct(slot: int, fields: List[Tuple[int, str]]) -> Tuple[struct.Struct, List[int]]:
    """A struct for one whole slot (the frame's address, then its bytes) that unpacks
    ``fields`` ((offset in the frame, struct code)), with where each one comes in its tuple:
    the address first, then the fields by offset."""
    order = sorted(range(len(fields)), key=lambda i: fields[i][0])
    fmt, at = "<Q", 8
    for i in order:
        offset, code = fields[i]
        fmt += "%dx%s" % (8 + offset - at, code)
        at = 8 + offset + struct.calcsize("<" + code)
    fmt += "%dx" % (slot - at)
    return struct.Struct(fmt), [1 + order.index(i) for i in range(len(fields))]


def read_chain(mem, layout: Layout, tstate: int) -> Capture:
    """The frames of a thread that holds still, read from outside as the program would copy
    them (for what only a capture tells: ``CaptureDecoder.runs``).  Raises what a read
    raises."""
    addr = U64.unpack(mem.read(tstate + layout.thread.frame, 8))[0]
    if layout.thread_frame_kind == "cframe" and addr:
        assert layout.cframe is not None
        addr = U64.unpack(mem.read(addr + layout.cframe.current_frame, 8))[0]
    slots, status = _read_slots(mem, layout, addr, MAX_FRAMES)
    return Capture(0, 0, tstate, status, 0, 0, 0, slots)


def _read_slots(mem, layout: Layout, addr: int, most: int,
                seen: AbstractSet[int] = frozenset()) -> Tuple[bytes, int]:
    """(the slots of up to ``most`` frames from ``addr`` outwards, read from outside as the
    program copies them, and the status of that chain: FAULT where it comes back to a frame
    it met, or one of ``seen``).  Raises what a read raises."""
    fr = layout.frame
    size = _frame_bytes(layout)
    slots: List[bytes] = []
    met = set(seen)
    for _ in range(most):
        if not addr:
            break
        if addr in met:
            return b"".join(slots), FAULT
        met.add(addr)
        data = mem.read(addr, size)
        slots.append(U64.pack(addr) + data)
        addr = U64.unpack_from(data, fr.previous)[0]
    return b"".join(slots), TRUNCATED if addr else WHOLE


def completed(mem, layout: Layout, capture: Capture, most: int,
              guess: Sequence[int] = ()) -> Tuple[Capture, List[int]]:
    """A capture deeper than the program copies (``TRUNCATED``, ``MAX_FRAMES`` frames) with
    its outer frames, up to ``most`` more, read from outside: they hold still while the
    frames copied run, which makes the copy and the read one stack; and the addresses of
    those outer frames.  ``guess``: those of the thread's last completion, read in one
    system call from where the chain meets them (outer frames rarely change).  The capture
    as it was where they cannot be read."""
    size = _frame_bytes(layout)
    slot = 8 + size
    if capture.status != TRUNCATED or len(capture.frames) < slot:
        return capture, []
    previous = layout.frame.previous
    addr = U64.unpack_from(capture.frames, len(capture.frames) - slot + 8 + previous)[0]
    # A chain that comes back to a frame it met is a cycle of stale links (a coroutine's frame
    # freed and made again while the program copied): followed, it would be read around and
    # around, a system call a frame, up to ``most`` of them.
    copied = {U64.unpack_from(capture.frames, at)[0]
              for at in range(0, len(capture.frames) - slot + 1, slot)}
    if len(copied) * slot < len(capture.frames) or addr in copied:
        return capture._replace(status=FAULT), []
    slots: List[bytes] = []
    chain: List[int] = []
    if addr in guess:
        start = guess.index(addr)
        for at, data in zip(guess[start:start + most],
                            mem.read_many([(a, size) for a in guess[start:start + most]])):
            if data is None or at != addr or at in copied:
                break
            copied.add(at)
            slots.append(U64.pack(at) + data)
            chain.append(at)
            addr = U64.unpack_from(data, previous)[0]
    try:
        more, status = _read_slots(mem, layout, addr, most - len(chain), copied)
    except READ_ERRORS:
        return capture, []
    chain += [U64.unpack_from(more, i)[0] for i in range(0, len(more), slot)]
    return capture._replace(status=status, frames=capture.frames + b"".join(slots) + more), chain


class CaptureDecoder:
    """A capture's frames as the walker's (codes, offsets, torn) and its generator frames."""

    def __init__(self, layout: Layout, frame_type: Optional[int]):
        fr = layout.frame
        slot = 8 + _frame_bytes(layout)
        self._identity_bytes = code_window(layout)[1]
        self._iframe = layout.frame_kind == "iframe"
        if self._iframe:
            assert fr.owner is not None
            self._entry_flag = fr.is_entry is not None
            fields = [(fr.code, "Q"), (fr.previous, "Q"), (fr.instr, "Q"), (fr.owner, "B")]
            if fr.is_entry is not None:
                fields.append((fr.is_entry, "B"))
            self._adaptive = layout.code.co_code_adaptive or 0
            self._max_owner = layout.max_frame_owner
            self._skip_owner = (layout.skip_owner_from if layout.skip_owner_from is not None
                                else 256)
            self._untag = ~layout.executable_tag_mask
        else:
            assert fr.gen is not None
            fields = [(layout.ob_type, "Q"), (fr.previous, "Q"), (fr.code, "Q"),
                      (fr.instr, "i"), (fr.gen, "Q")]
            self._scale = 2 if layout.instr_kind == "lasti_units" else 1
            self._frame_type = frame_type
        self._slot, positions = _slot_struct(slot, fields)
        if self._iframe and fr.is_entry is None:
            positions.append(positions[3])  # the owner again, in is_entry's place (not read)
        self._fields = operator.itemgetter(0, *positions)
        #: (Python frames, the address of its entry frame or 0) of each run of the eval loop,
        #: innermost first, in the last ``decode`` (see spyrec.nativestacks).
        self.runs: List[Tuple[int, int]] = []
        #: Where the identity of each of the last ``decode``'s codes lies in its capture's
        #: ``identities`` (see CodeCache.identity_in).
        self.windows: List[int] = []

    def decode(self, capture: Capture
               ) -> Tuple[List[int], List[int], bool, List[Tuple[int, int]]]:
        """(codes, offsets, torn, (address, index in codes) of each generator frame),
        innermost first."""
        codes: List[int] = []
        offsets: List[int] = []
        gens: List[Tuple[int, int]] = []
        self.runs = runs = []
        self.windows = windows = []
        identity = self._identity_bytes
        torn = capture.status != WHOLE or not capture.frames
        slots = enumerate(map(self._fields, self._slot.iter_unpack(capture.frames)))
        if self._iframe:
            untag, adaptive = self._untag, self._adaptive
            max_owner, skip_owner = self._max_owner, self._skip_owner
            entry_flag = self._entry_flag
            run_from = 0
            owner = -1
            for i, (addr, code, previous, instr, owner, entry) in slots:
                if owner > max_owner or previous == addr:
                    return codes, offsets, True, gens
                if owner >= skip_owner:
                    # the entry frame of a run (3.12+), on the C stack of that run's eval loop
                    runs.append((len(codes) - run_from, addr))
                    run_from = len(codes)
                    continue
                code &= untag
                if not code:
                    if not codes:
                        continue  # popped as the interrupt came (3.14+ clears it first)
                    return codes, offsets, True, gens
                offset = instr - code - adaptive
                if not MIN_OFFSET <= offset < MAX_OFFSET:
                    return codes, offsets, True, gens
                if owner == FRAME_OWNED_BY_GENERATOR:
                    gens.append((addr, len(codes)))
                codes.append(code)
                offsets.append(offset)
                windows.append(i * identity)
                if entry_flag and entry:  # the first frame of a run (3.11)
                    runs.append((len(codes) - run_from, 0))
                    run_from = len(codes)
            if len(codes) > run_from:
                runs.append((len(codes) - run_from, 0))
            # A chain ends at an entry frame (3.12+), or at least not at a generator's frame:
            # one that does was copied as a generator was being linked in or out.
            ends = owner >= skip_owner if skip_owner < 256 else owner != FRAME_OWNED_BY_GENERATOR
        else:
            frame_type, scale = self._frame_type, self._scale
            gen = 0
            for i, (addr, ob_type, back, code, lasti, gen) in slots:
                if frame_type and ob_type != frame_type or back == addr:
                    return codes, offsets, True, gens
                if gen:
                    gens.append((addr, len(codes)))
                codes.append(code)
                offsets.append(lasti * scale)
                windows.append(i * identity)
            runs.extend([(1, 0)] * len(codes))  # a run of the eval loop per frame object
            ends = not gen  # a suspended generator's frame has no caller to end a chain
        if codes and capture.status == WHOLE and not ends:
            torn = True
        return codes, offsets, torn, gens
