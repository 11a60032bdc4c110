"""Per-thread CPU time and run state, and process memory, from /proc.

Each file is opened once and re-read with ``os.pread``: a kept-open /proc file returns fresh
values on every read, for about a microsecond, where open+read+close costs tens.  Field
positions are from proc(5); ``stat`` is split after the *last* ``)`` because a thread's name
may itself contain spaces and parentheses.
"""

import os

from spyrec.syscalls import syscall_name

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


#: When the thread's CPU is not needed, every this many "running" answers from ``wchan`` are
#: confirmed with ``stat``.
WCHAN_CHECK_EVERY = 64
#: ``stat`` disagreeing this often (and in most checks) means ``wchan`` cannot be trusted here.
WCHAN_MAX_MISSES = 4
#: A thread found still this many refreshes in a row is *dormant*: its state is no longer read
#: while it stays still (see ``ThreadStats.refresh``).
DORMANT_AFTER = 8


class ThreadStats:
    """CPU time (ns, from ``schedstat``), running state and CPU (``stat``, ``wchan``) of a thread.

    ``stat`` says whether the thread is on a CPU or runnable (state ``R``) and which CPU it is
    on or queued for (``processor``); the sampler needs that CPU to stay off it (see
    ``spyrec.scheduling``).  It costs several times what ``wchan`` does (the kernel formats
    fifty fields instead of one word; docs/benchmarks.md), so a thread found asleep last time is probed with
    ``wchan`` first: that holds the function a sleeping thread waits in, and ``0`` for a thread
    that is runnable, which ``stat`` then confirms and places.  ``wchan`` also says ``0`` when
    the kernel will not tell (no ptrace access, or an unwinder that cannot walk the kernel
    stack), so a thread whose ``wchan`` keeps disagreeing with ``stat`` is read from ``stat``
    alone from then on.  A thread found running last time is read from ``stat`` directly.
    When the CPU is not needed (``need_cpu=False``: the sampler ran its rounds back to back,
    so it did not just wake on some CPU), ``wchan`` alone is asked and a ``0`` is confirmed
    with ``stat`` only now and then, which keeps the fastest rounds cheaper.
    """

    __slots__ = ("_schedstat", "_stat", "_wchan", "_syscall", "_zeros", "_checks", "_misses",
                 "last_cpu_ns", "_switches", "_raw", "running", "still", "still_count", "cpu",
                 "_channel", "cause", "_base", "_stack", "kernel_frames", "_kernel_by_cause",
                 "_native", "user_sp_ip")

    def __init__(self, proc_root, pid, tid, kernel=False, native=False):
        """``kernel``: also read a sleeping thread's kernel frames (``kernel_frames``);
        ``native``: its user stack and instruction pointers (``user_sp_ip``)."""
        base = "%s/%d/task/%d/" % (proc_root, pid, tid)
        self._schedstat = _open_or_none(base + "schedstat")
        self._stat = _open_or_none(base + "stat")
        self._wchan = _open_or_none(base + "wchan")
        self._base = base
        self._syscall = -1  # opened when first needed: only threads that wait need it
        self._channel = None  # what the last read of wchan said, when it named a function
        #: (system call, kernel function) the thread waited in at the last ``refresh()`` that
        #: found it asleep, each None when unknown; (None, None) while it runs.
        self.cause = (None, None)
        self._stack = -1 if kernel else None  # ``stack``, opened when first needed
        #: The kernel functions it was blocked in at that ``refresh()``, innermost first, with
        #: ``kernel``; () while it runs, or when the kernel does not tell.
        self.kernel_frames = ()
        self._kernel_by_cause = {}  # (call, function) -> kernel_frames read asleep in it
        self._native = native
        #: (stack pointer, instruction pointer) of the thread's user code at the last
        #: ``refresh()`` that found it asleep, with ``native``; None when not known.
        self.user_sp_ip = None
        self._zeros = self._checks = self._misses = 0
        self.last_cpu_ns = None
        self._switches = 0
        self._raw = None  # schedstat as last read
        #: The state read by the last ``refresh()``.
        self.running = True
        #: The CPU the thread was on or queued for at the last ``refresh()``; -1 when asleep
        #: or unknown.
        self.cpu = -1
        #: True when the thread has not been on a CPU since the previous ``refresh()`` found
        #: it asleep (see ``refresh``).
        self.still = False
        #: How many refreshes in a row found the thread still.
        self.still_count = 0

    def refresh(self, read_after=True, need_cpu=True):
        """Read the thread for one sample: its CPU time since the last call, then its state.

        Returns the CPU time delta (as ``cpu_delta_ns``) and sets ``running``, ``cpu`` and
        ``still``.  ``schedstat``'s third field counts the times the thread was switched onto a
        CPU.  When the previous refresh read that count and *then* found the thread asleep (a
        wait channel: off the run queue), and the count has not moved since, the thread has
        executed nothing since that state read: whatever was read of it after the previous
        refresh (its stack) is what it still is.  ``read_after=False`` says nothing is read of
        the thread after this call (its stack was read before), so the next call cannot find
        it still.  A kernel without scheduler statistics prints ``0 0 0``, and a count of 0
        never counts as still.

        A thread found still ``DORMANT_AFTER`` times in a row (a pool's worker waiting for
        work) is not asked its state again until its switch count moves: it is still asleep,
        or woken and queued without having run yet, and is counted asleep either way (its
        stack and CPU time are those of a thread that has not run).  In a process with many
        idle threads that read was a large part of a round.  A thread that waits for the GIL
        wakes every few milliseconds and so never becomes dormant at the rates that need
        stepping aside.
        """
        if self.still_count >= DORMANT_AFTER and self._schedstat is not None:
            try:  # dormant: unchanged bytes say it all (the common case, made short)
                if os.pread(self._schedstat, 96, 0) == self._raw:
                    return 0
            except OSError:
                pass  # read again below, and found unreadable there
        was_asleep = not self.running
        previous = self._switches
        delta = self.cpu_delta_ns()
        self.still = was_asleep and self._switches == previous and previous > 0
        if not self.still:
            self.still_count = 0
        elif self.still_count < DORMANT_AFTER:
            self.still_count += 1
        if self.still_count < DORMANT_AFTER:
            self.running = self.is_running(probe_first=was_asleep or not need_cpu,
                                           need_cpu=need_cpu)
            if self.running:
                self.cause = (None, None)
                self.kernel_frames = ()
                self.user_sp_ip = None
            elif not self.still:  # asleep since it last ran: in what (a still one, as before)
                self.cause = self._wait_cause()
                if self._stack is not None:
                    self.kernel_frames = self._kernel_frames_for(self.cause)
        if not read_after:
            self._switches = 0
            self._raw = None  # parsed again next time, to take its switch count up
        return delta

    @property
    def switches(self):
        """How many times the thread was switched onto a CPU, as last parsed (0: unknown)."""
        return self._switches

    def peek_switches(self):
        """The switch count now, read without changing what ``refresh`` compares (0 when
        unreadable)."""
        try:
            return int(os.pread(self._schedstat, 96, 0).split()[2])
        except (OSError, TypeError, ValueError, IndexError):
            return 0

    def cpu_delta_ns(self):
        """CPU time used since the previous call (0 on the first, or when unreadable).

        The kernel updates a running thread's total at scheduler ticks and context switches, so
        single deltas are lumpy at high sampling rates while their sum stays exact.
        """
        if self._schedstat is None:
            return 0
        try:
            raw = os.pread(self._schedstat, 96, 0)
            if raw == self._raw and self.last_cpu_ns is not None:
                return 0  # not run since (the common case of an idle thread): nothing to parse
            self._raw = raw
            fields = raw.split()
            total = int(fields[0])
            self._switches = int(fields[2])
        except (OSError, ValueError, IndexError):
            self._switches = 0
            self._raw = None
            return 0
        last = self.last_cpu_ns
        self.last_cpu_ns = total
        return 0 if last is None else total - last

    def _wait_cause(self):
        """(system call, kernel function) of a sleeping thread, from ``syscall`` and the
        ``wchan`` the state probe read (or one read now)."""
        call = None
        self.user_sp_ip = None
        syscall = self._syscall_file()
        if syscall is not None:
            try:
                fields = os.pread(syscall, 256 if self._native else 64, 0).split()
                if fields[0].isdigit():
                    call = syscall_name(int(fields[0]))
                if self._native:
                    self.user_sp_ip = _sp_ip(fields)
            except (OSError, IndexError, ValueError):
                pass
        channel = self._channel
        if channel is None and self._wchan is not None:
            channel = _function_name(self._read_wchan())
        return call, channel

    def _syscall_file(self):
        """The thread's ``syscall`` file, opened when first needed (only threads that wait
        need it), or None where it cannot be opened."""
        if self._syscall == -1:
            self._syscall = _open_or_none(self._base + "syscall")
        return self._syscall

    def sp_ip_now(self):
        """(stack pointer, instruction pointer) of the thread asleep now, None if it runs
        (or the kernel will not tell)."""
        syscall = self._syscall_file()
        if syscall is None:
            return None
        try:
            return _sp_ip(os.pread(syscall, 256, 0).split())
        except (OSError, ValueError):
            return None

    def _kernel_frames_for(self, cause):
        """The kernel frames of the thread asleep in ``cause``.  The path from a system call to
        the function it sleeps in hardly varies, so a thread's stack is read once per (call,
        function) it sleeps in (a few: a worker waits for work, then for the GIL, in turn)."""
        if None in cause:
            return self._read_kernel_frames()
        known = self._kernel_by_cause
        frames = known.get(cause)
        if frames is None:
            frames = self._read_kernel_frames()
            # kept only whole, down to the system call's entry: a thread that woke meanwhile
            # shows none, or part of one
            if frames and frames[-1].startswith("entry_"):
                if len(known) >= KERNEL_CAUSES_KEPT:
                    known.clear()
                known[cause] = frames
        return frames

    def _read_kernel_frames(self):
        """The kernel functions of a sleeping thread, innermost first, without offsets."""
        if self._stack == -1:
            self._stack = _open_or_none(self._base + "stack")
        if self._stack is None:
            return ()
        try:
            data = os.pread(self._stack, KERNEL_STACK_BYTES, 0)
        except OSError:
            return ()
        return tuple(symbol.split("+", 1)[0] for symbol in _kernel_symbols(data))

    def _read_wchan(self):
        """``wchan`` now: a function's name, ``0`` (running, or the kernel will not tell), or
        None when unreadable."""
        try:
            return os.pread(self._wchan, 64, 0)
        except OSError:
            return None

    def is_running(self, probe_first=True, need_cpu=True):
        """True when the thread is on a CPU or runnable (state ``R``); sets ``cpu``.

        ``probe_first`` asks ``wchan`` before ``stat``: cheaper for a thread likely asleep.
        ``need_cpu=False`` trusts most of ``wchan``'s ``0`` answers and leaves ``cpu`` at -1.
        """
        self.cpu = -1
        self._channel = None
        if probe_first and self._wchan is not None:
            data = self._read_wchan()
            if data is not None and data != b"0":
                self._channel = _function_name(data)
                return False
            if data is not None:
                self._zeros += 1
                if not need_cpu and self._zeros % WCHAN_CHECK_EVERY:
                    return True
                running = self._stat_running()
                self._checks += 1
                if not running:
                    self._misses += 1
                    if self._misses >= WCHAN_MAX_MISSES and 2 * self._misses > self._checks:
                        os.close(self._wchan)
                        self._wchan = None
                return running
        return self._stat_running()

    def _stat_running(self):
        if self._stat is None:
            return False
        try:
            data = os.pread(self._stat, 512, 0)
        except OSError:
            return False
        end = _state_at(data)
        if end < 0:
            return False
        try:  # ``processor`` is field 39; fields from 3 (the state) on follow the ")"
            self.cpu = int(data[end:].split(None, 37)[36])
        except (ValueError, IndexError):
            pass
        return True

    def close(self):
        for fd in (self._schedstat, self._stat, self._wchan, self._syscall, self._stack):
            if fd is not None and fd != -1:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._schedstat = self._stat = self._wchan = self._syscall = self._stack = None


def thread_running(proc_root, pid, tid):
    """Whether thread ``tid`` is on a CPU or runnable now (``stat``'s state ``R``), for a
    thread not followed yet."""
    try:
        with open("%s/%d/task/%d/stat" % (proc_root, pid, tid), "rb") as f:
            return _state_at(f.read(512)) >= 0
    except OSError:
        return False


def _state_at(stat):
    """Where the state field of a ``stat`` line is, when it says ``R``; else -1 (the command
    name before it, in parentheses, may hold anything)."""
    end = stat.rfind(b")")
    return end + 2 if end >= 0 and stat[end + 2:end + 3] == b"R" else -1


def kernel_stack(proc_root, pid, tid):
    """The kernel's frames of a thread blocked in it, innermost first (``function+offset``),
    from ``stack`` (root only; a running thread has none there)."""
    try:
        with open("%s/%d/task/%d/stack" % (proc_root, pid, tid), "rb") as f:
            return _kernel_symbols(f.read(KERNEL_STACK_BYTES))
    except OSError:
        return []


def _kernel_symbols(data):
    """``function+offset`` of each line of a ``stack`` read, innermost first."""
    frames = []
    for line in data.decode("ascii", "replace").splitlines():  # "[<0>] futex_wait_queue+0x60/0x90"
        symbol = line.split("] ", 1)[-1].strip()
        if symbol:
            frames.append(symbol.rsplit("/", 1)[0])
    return frames


class ProcessStats:
    """Resident set size of a process, from ``statm``."""

    def __init__(self, proc_root, pid):
        self._statm = _open_or_none("%s/%d/statm" % (proc_root, pid))

    def rss_bytes(self):
        if self._statm is None:
            return 0
        try:
            return int(os.pread(self._statm, 128, 0).split()[1]) * PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return 0

    def close(self):
        if self._statm is not None:
            os.close(self._statm)
            self._statm = None


#: More than a kernel stack's deepest listing (the kernel prints at most 64 frames).
KERNEL_STACK_BYTES = 16 * 1024
#: Kernel stacks kept per thread, one per (system call, function slept in).
KERNEL_CAUSES_KEPT = 8


def _function_name(wchan):
    """The kernel function a ``wchan`` read names, or None (``0``, empty or unreadable)."""
    wchan = (wchan or b"").strip()
    return wchan.decode("ascii", "replace") if wchan and wchan != b"0" else None


def _sp_ip(fields):
    """(stack pointer, instruction pointer) from the fields of ``syscall``: "NR args... sp pc"
    in a system call, "-1 sp pc" blocked outside one (fs/proc/base.c proc_pid_syscall); None
    for "running".  Raises ValueError on a field that is no number."""
    if len(fields) in (3, 9):
        return int(fields[-2], 16), int(fields[-1], 16)
    return None


def _open_or_none(path):
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
