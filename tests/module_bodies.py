"""A recording of tests/targets/imports.py set against the target's own clock: which module's
body ran when (the ``spans`` it prints as it stops), and which one each sample names."""

import bisect
import os
from typing import List, NamedTuple, Optional

#: The modules the target imports are ``short_module_<n>.py``.
BODY_FILE = "short_module_"


class BodyTruth(NamedTuple):
    samples: int  # samples from the first body timed to the last
    in_bodies: int  # of those, the ones whose stack holds a module's body
    own_share: float  # the bodies' share of that time by the target's clock
    timed: int  # samples taken while a body ran, by that clock, that hold a body
    named_right: int  # of those, the ones that name the module whose body ran


def body_module(rec, stack_id: int) -> Optional[int]:
    """The number of the module whose body a stack of a spyformat recording holds, or None."""
    for frame in rec.stacks[stack_id]:
        name = os.path.basename(rec.strings[rec.frames["file"][frame]])
        if name.startswith(BODY_FILE) and name.endswith(".py"):
            return int(name[len(BODY_FILE):-3])
    return None


def body_truth(rec, spans: List[float]) -> BodyTruth:
    """``rec`` (spyformat.read_recording) against the target's ``spans`` (start, end, module
    number, ...; seconds of CLOCK_MONOTONIC, the clock of the recording's ``start_mono_ns``)."""
    starts, ends, numbers = spans[0::3], spans[1::3], [int(n) for n in spans[2::3]]
    origin = rec.header["start_mono_ns"]
    times = [(origin + int(t)) / 1e9 for t in rec.samples["t"].tolist()]
    first, last = max(min(times), starts[0]), min(max(times), ends[-1])
    body_time = sum(min(end, last) - max(start, first)
                    for start, end in zip(starts, ends) if end > first and start < last)
    modules = {}
    samples = in_bodies = timed = named_right = 0
    for when, stack in zip(times, rec.samples["stack"].tolist()):
        if not first <= when <= last:
            continue
        samples += 1
        if stack not in modules:
            modules[stack] = body_module(rec, stack)
        named = modules[stack]
        if named is None:
            continue
        in_bodies += 1
        at = bisect.bisect_right(starts, when) - 1
        if at >= 0 and when < ends[at]:
            timed += 1
            named_right += named == numbers[at]
    return BodyTruth(samples, in_bodies, body_time / max(last - first, 1e-9), timed, named_right)
