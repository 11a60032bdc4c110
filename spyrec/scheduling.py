"""How the sampling thread shares the machine's CPUs with the target.

A round takes tens of microseconds of a CPU, a thousand or more times a second.  Taken from
an idle CPU it costs the target nothing; taken from a CPU a target thread is on, the thread
waits for the whole round and then runs on with a cache the recorder displaced.  So the
sampling thread asks to run on time without taking more than it uses
(``LowLatency``), and moves off a CPU it finds a runnable target thread queued on
(``StepAside``).
"""

import ctypes
import os
import struct

PR_SET_TIMERSLACK = 29
PR_GET_TIMERSLACK = 30
SYS_SCHED_SETATTR = 314  # x86-64
SYS_SCHED_GETATTR = 315
#: The CPU slice the sampling thread asks the scheduler for (the minimum Linux accepts).
SAMPLING_SLICE_NS = 100_000
SCHED_FIFO = 1
SCHED_FLAG_RESET_ON_FORK = 0x01
#: The real-time priority the sampling thread asks for: the lowest (see LowLatency).
REALTIME_PRIORITY = 1
#: ``SPYREC_STEP_ASIDE=0`` in the environment turns ``StepAside`` off (for measuring it).
STEP_ASIDE_ENV = "SPYREC_STEP_ASIDE"

_libc = ctypes.CDLL(None, use_errno=True)
#: None with a C library that lacks it: then StepAside stays off.
_sched_getcpu = getattr(_libc, "sched_getcpu", None)


class LowLatency:
    """How the sampling thread asks the kernel to run it on time, and puts itself back.

    * 1 ns timer slack, so sleeps end on time (the default slack is 50 µs).
    * Asked for (``realtime``: ``spyrec --realtime``, at rates whose rounds leave sleeps
      between them) and where allowed (root, or CAP_SYS_NICE), the lowest real-time
      priority (SCHED_FIFO 1, not inherited by the processes it starts).  No thread of normal
      priority then switches the sampler away.  That matters beyond its rate: a read of another
      process's memory holds that process's ``mmap_lock`` for reading while the kernel pins
      its pages (mm/gup.c), and the kernel may switch away from the reader right there
      (``cond_resched``).  On a busy machine the reader then waits for a CPU for milliseconds
      with the lock held, and every ``mmap`` or ``munmap`` of the target waits behind it
      (docs/benchmarks.md, "Under load").  Not the default: a target thread that wakes on
      the sampler's CPU then always waits for the round to end.  A real-time sampler that
      cannot keep up steps down (``step_down``): it would otherwise keep a CPU from
      everything else.
    * Otherwise a short CPU slice (``sched_attr.sched_runtime`` of a normal task, Linux
      6.12+): the scheduler then runs the sampler as soon as it wakes and lets it finish a
      round instead of letting a target thread that just woke (threads waiting for the GIL
      wake every few ms) push it back by a whole default slice.  Priority and weight are
      unchanged; older kernels ignore the field.

    Any failure is ignored, and a policy the user chose (``chrt``) is kept.  ``restore`` puts
    the thread back as it was (``record()`` may run on a thread of the caller's).
    """

    def __init__(self, realtime: bool = False):
        self.realtime = False
        self._slack = _libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
        self._runtime = None
        self._nice = os.getpriority(os.PRIO_PROCESS, 0)
        try:
            _libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
            if os.sched_getscheduler(0) != os.SCHED_OTHER:
                return
            current = ctypes.create_string_buffer(56)
            if _libc.syscall(SYS_SCHED_GETATTR, 0, current, 56, 0) == 0:
                self._runtime = struct.unpack_from("<Q", current, 24)[0]
            if realtime and _set_attr(SCHED_FIFO, REALTIME_PRIORITY, 0, SCHED_FLAG_RESET_ON_FORK):
                self.realtime = True
            else:
                _set_attr(os.SCHED_OTHER, 0, self._nice, 0, SAMPLING_SLICE_NS)
        except (OSError, AttributeError):
            pass

    def step_down(self) -> None:
        """From real time to a normal task with a short slice."""
        if self.realtime:
            self.realtime = False
            _set_attr(os.SCHED_OTHER, 0, self._nice, 0, SAMPLING_SLICE_NS)

    def restore(self) -> None:
        try:
            if self._slack > 0:
                _libc.prctl(PR_SET_TIMERSLACK, self._slack, 0, 0, 0)
            if self._runtime is not None or self.realtime:
                _set_attr(os.SCHED_OTHER, 0, self._nice, 0, self._runtime or 0)
            self.realtime = False
        except (OSError, AttributeError):
            pass


def _set_attr(policy: int, priority: int, nice: int, flags: int, runtime_ns: int = 0) -> bool:
    """sched_setattr(2) on the calling thread; whether it took."""
    # struct sched_attr (56 bytes): size, policy, flags, nice, priority, runtime, deadline,
    # period, util_min, util_max.
    attr = ctypes.create_string_buffer(struct.pack(
        "<IIQiIQQQII", 56, policy, flags, nice, priority, runtime_ns, 0, 0, 0, 0))
    return _libc.syscall(SYS_SCHED_SETATTR, 0, attr, 0) == 0


class StepAside:
    """Moves the sampling thread off a CPU that a runnable target thread is queued for.

    A sleeping thread wakes on the CPU it last ran on when it can, and a recorder that asks
    for a short slice then preempts whatever runs there.  The target's threads move between
    CPUs at every change of GIL holder, so with four threads sharing the GIL on 2 CPUs four
    of the recorder's wake-ups in ten (``bench/bench_wakeups.py``) land on the CPU of a
    runnable target thread, usually the GIL holder, while the other CPU runs no target thread;
    the whole program then waits for the round.  A round that follows a sleep reads the state
    and CPU of each thread first (``ThreadStats``), those running at the last round before the
    others, and as soon as a runnable target thread is found on the sampler's own CPU while
    some CPU the sampler may use has none found so far, ``check`` moves it there: its
    affinity narrowed to those CPUs (the kernel migrates it at once) and restored.  The target
    then slows about as much as next to a process that only wakes as often (docs/benchmarks.md,
    "Stepping aside").  The move costs the sampler the wait for the other CPU to wake, while
    the target thread already has its CPU back; its next wake-up then lands on the new CPU.
    The program still waits a little each time (``bench.bench_stalls``): with a CPU of its own
    (``taskset``) the recorder would not land there at all.

    The CPUs allowed are the thread's affinity when it is made (``taskset`` narrows them; with
    one CPU there is nowhere to go).  ``SPYREC_STEP_ASIDE=0`` turns it off.
    """

    def __init__(self, cpus=None, enabled=None):
        self.cpus = frozenset(os.sched_getaffinity(0) if cpus is None else cpus)
        if enabled is None:
            enabled = os.environ.get(STEP_ASIDE_ENV, "1") != "0"
        self.enabled = enabled and len(self.cpus) > 1 and _sched_getcpu is not None
        #: How many times the thread moved.
        self.moves = 0

    def check(self, busy):
        """Move off this CPU if it is in ``busy`` (CPUs with a runnable target thread)."""
        if not self.enabled or not busy:
            return False
        here = _sched_getcpu()
        if here not in busy:
            return False
        free = self.cpus - busy
        if not free:
            return False
        try:
            os.sched_setaffinity(0, free)
            os.sched_setaffinity(0, self.cpus)
        except OSError:  # a CPU went offline, or a cpuset shrank: stay, and stop trying
            self.enabled = False
            try:
                os.sched_setaffinity(0, self.cpus)
            except OSError:
                pass
            return False
        self.moves += 1
        return True
