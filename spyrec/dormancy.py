"""Whether any of a process's dormant threads ran since their last read, from one count.

A thread pool or a server keeps most of its threads asleep for seconds.  Reading each one's
``schedstat`` every round to learn that it did not run was most of a round's cost.  The kernel
keeps, per thread, how many times it was switched onto a CPU; taskstats gives their sum over
the process in one request (``spyrec.taskstats``).  The sum moves when any thread is switched
in, so when it equals what the sampler knows of each thread, none of the others ran.
"""

from spyrec.taskstats import ProcessSwitches


class DormantWatch:
    """The process's switch count against the per-thread counts the sampler read.

    ``others`` is what the process total holds beyond the threads the sampler reads: threads
    that ended and left their counts to the group, threads without a Python thread state.  It
    is measured on a round that read every thread between two equal totals (no thread was
    switched in during those reads, so they and the total describe one moment).  A total
    read after the active threads' counts then equals those counts, plus the dormant
    threads' last counts, plus ``others`` only if no dormant thread was switched in since it
    was last read (and no active thread since its count was read): every count only grows.
    """

    def __init__(self, counter):
        self._counter = counter
        self.others = None
        #: The last check failed: ``others`` may be out of date (a thread ended), so the next
        #: round reads a total before its reads too, to measure it again.
        self.missed = True

    @classmethod
    def open(cls, pid):
        """A watch on process ``pid``, or None where the kernel does not give the count."""
        counter = ProcessSwitches.open(pid)
        return None if counter is None else cls(counter)

    @property
    def wants_measure(self):
        """Whether this round should read a total first, to measure ``others`` with."""
        return self.missed or self.others is None

    def count(self):
        return self._counter.switches()

    def quiet(self, total, known):
        """True when the ``total`` read after the active threads' counts shows that no other
        thread ran, ``known`` being the sum of every thread's count as last read."""
        quiet = self.others is not None and total is not None and total == known + self.others
        self.missed = not quiet
        return quiet

    def measure(self, before, after, known):
        """Measure ``others`` on a round that read every thread (``known``: their counts)
        between the totals ``before`` and ``after``."""
        if before is not None and before == after:
            others = before - known
            self.others = others if others >= 0 else None
            self.missed = self.others is None

    def close(self):
        self._counter.close()
