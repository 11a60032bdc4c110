"""When each round of an in-process recording began and ended, for tests that judge a sample by
the moment its stack was read."""

import bisect
import time

from spyrec.sampler import Sampler


class Rounds:
    """Notes each round's beginning and end (ns from the recording's origin), by patching
    ``Sampler.sample_round`` with pytest's ``monkeypatch``.

    A sample is stamped inside its round: when its thread state was copied for its walk, or,
    for a stack kept from an earlier walk, when the round began; or, copied at an interrupt,
    between the round before and its own.  Its stack held at some moment between its stamp and
    the round's end.
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
        at = bisect.bisect_right(self._starts, t)
        begun = self._starts[at - 1]
        if t <= self.end[begun]:
            return begun, self.end[begun]
        # A stack copied at an interrupt (spyrec.stackcapture) is stamped then, before the round that
        # took it began: it held at its stamp, the thread's /proc figures were read by the end.
        assert at < len(self._starts), (t, begun, self.end[begun])
        return t, self.end[self._starts[at]]

    def end_of(self, t):
        """The end of the round that took the sample stamped ``t``."""
        return self.of(t)[1]
