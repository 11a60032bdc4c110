"""Per-thread CPU time and run state, and process memory, from /proc.

Each file is opened once and re-read with ``os.pread``: a kept-open /proc file returns fresh
values on every read, for about a microsecond, where open+read+close costs tens.  Field
positions are from proc(5); ``stat`` is split after the *last* ``)`` because a thread's name
may itself contain spaces and parentheses.
"""

import os

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ThreadStats:
    """CPU time (ns, from ``schedstat``) and running state (from ``stat``) of one thread."""

    __slots__ = ("_schedstat", "_stat", "last_cpu_ns")

    def __init__(self, proc_root, pid, tid):
        base = "%s/%d/task/%d/" % (proc_root, pid, tid)
        self._schedstat = _open_or_none(base + "schedstat")
        self._stat = _open_or_none(base + "stat")
        self.last_cpu_ns = None

    def cpu_delta_ns(self):
        """CPU time used since the previous call (0 on the first, or when unreadable).

        The kernel updates a running thread's total at scheduler ticks and context switches, so
        single deltas are lumpy at high sampling rates while their sum stays exact.
        """
        if self._schedstat is None:
            return 0
        try:
            total = int(os.pread(self._schedstat, 64, 0).split(None, 1)[0])
        except (OSError, ValueError, IndexError):
            return 0
        last = self.last_cpu_ns
        self.last_cpu_ns = total
        return 0 if last is None else total - last

    def is_running(self):
        """True when the thread is on a CPU or runnable (state ``R``)."""
        if self._stat is None:
            return False
        try:
            data = os.pread(self._stat, 512, 0)
        except OSError:
            return False
        end = data.rfind(b")")
        return end >= 0 and data[end + 2:end + 3] == b"R"

    def close(self):
        for fd in (self._schedstat, self._stat):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._schedstat = self._stat = None


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


def _open_or_none(path):
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
