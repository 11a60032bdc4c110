"""When each round of an in-process recording began and ended, for tests that judge a sample by
the moment its stack was read."""

import bisect
import time

from spyrec.sampler import Sampler


class Rounds:
    """Notes each round's beginning and end (ns from the recording's origin), by patching
    ``Sampler.sample_round`` with pytest's ``monkeypatch``.

    A sample is stamped inside its round: when its thread state was copied for its walk, or,
    for a stack kept from an earlier walk, when the round began.  Its stack held at some moment
    between its stamp and the round's end.
    """

    def __init__(self, monkeypatch):
        self.end = {}
        self._starts = []
        sample_round = Sampler.sample_round

        def timed_round(sampler, now):
            sample_round(sampler, now)
            self.end[now - sampler.origin_ns] = time.monotonic_ns() - sampler.origin_ns

        monkeypatch.setattr(Sampler, "sample_round", timed_round)

    def __len__(self):
        return len(self.end)

    def of(self, t):
        """(beginning, end) of the round that took the sample stamped ``t``: its thread's
        /proc figures (state, CPU time) were read after the beginning, its stack by the end."""
        if len(self._starts) != len(self.end):
            self._starts = sorted(self.end)
        begun = self._starts[bisect.bisect_right(self._starts, t) - 1]
        assert begun <= t <= self.end[begun], (t, begun, self.end[begun])
        return begun, self.end[begun]

    def end_of(self, t):
        """The end of the round that took the sample stamped ``t``."""
        return self.of(t)[1]
