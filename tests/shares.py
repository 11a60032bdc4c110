"""How far a share counted from samples may stray from the share the target measured, by chance.

A sample lands in a function with the probability of the function's share of the time, so the
count over n samples is binomial: its share has a standard deviation of sqrt(p(1 - p) / n).  A
bound of four of them fails about once in 16,000 honest runs; a fixed bound as tight as three
failed a full run now and then on a loaded machine.
"""

import math

#: Standard deviations a share may stray before a test calls it wrong.
SIGMAS = 4


def sampling_margin(share: float, samples: int, floor: float = 0.0) -> float:
    """The margin around ``share`` that ``samples`` samples measure it to, at least ``floor``."""
    spread = math.sqrt(max(share * (1 - share), 0.0) / max(samples, 1))
    return max(floor, SIGMAS * spread)
