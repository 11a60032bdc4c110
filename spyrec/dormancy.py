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
    switched in during those reads, so they and the total describe one moment), and trusted
    until the next such round.  A round is quiet when two totals read around the reads of the
    threads still read each round are equal, and equal to those threads' counts plus the
    dormant threads' last counts plus ``others``: every count only grows, so no dormant thread
    can have been switched in since it was last read.
    """

    def __init__(self, counter):
        self._counter = counter
        self.others = None

    @classmethod
    def open(cls, pid):
        """A watch on process ``pid``, or None where the kernel does not give the count."""
        counter = ProcessSwitches.open(pid)
        return None if counter is None else cls(counter)

    def count(self):
        return self._counter.switches()

    def quiet(self, before, after, known):
        """True when totals ``before`` and ``after`` the reads show that only the threads read
        ran, ``known`` being the sum of every thread's count as last read."""
        return (before is not None and before == after and self.others is not None
                and after == known + self.others)

    def calibrate(self, before, after, known):
        """Measure ``others`` on a round that read every thread (``known``: their counts)."""
        if before is not None and before == after:
            others = before - known
            self.others = others if others >= 0 else None

    def close(self):
        self._counter.close()
