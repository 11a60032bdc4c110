"""A target that spends its time inside generators and coroutines.  Plain Python, runs on 3.8+.

Usage: ``python generators.py [DURATION=30] [PHASE...] [schedule]`` (all phases unless some
are named).

Seven phase functions take turns, each a stack shape that loses callers when a generator that
yields while a sampler reads its frames is taken for the bottom of the stack:

* ``via_list``: nested ``yield from`` generators consumed by C (``list``);
* ``via_sum``: a generator expression over nested generators consumed by C (``sum``);
* ``via_join``: a generator expression consumed by ``str.join``;
* ``via_for``: nested generators consumed by a Python ``for`` loop;
* ``via_async``: coroutines awaiting each other under an async generator, driven by ``send``;
* ``via_json``: the standard library's ``json.dumps(..., indent=2)`` (its encoder is nested
  generators consumed by ``list``);
* ``via_tokens``: a generator that works, then yields, consumed by a ``for`` loop that works
  as long: next to no time is spent on the ``yield`` line itself (marked ``@yield``).

The phases are balanced on the wall clock in slices of random length, so the split between them
is close to even over any stretch of a second or more.  The ready line (see _truth.py) lists the
phases; at the end the target prints one more JSON line with what it measured:
``{"shares": {phase: share of the loop's wall time spent inside that function}, ...}``; with
``schedule``, also ``"schedule": [[start, end, phase], ...]``, each call of a phase function
timed on ``time.monotonic_ns()`` (the clock a recorder's samples are stamped with).  SIGUSR1
ends the run before DURATION (see _truth.py).
"""

import json
import random
import sys
import time

from _truth import duration_arg, ready, stop_on_signal, stopped
from _work import work

DURATION = duration_arg()
#: Seconds per phase per round, drawn at random (a fixed slice would beat against the sampler).
SLICE = (0.001, 0.005)


def numbers(n):
    for i in range(n):
        yield i * i % 1013  # @numbers


def nested(depth, n):
    if depth == 0:
        yield from numbers(n)
    else:
        yield from nested(depth - 1, n)  # @nested


def via_list(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        list(nested(6, 40))


def via_sum(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(x % 7 for x in nested(4, 40))


def via_join(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        "".join(str(x) for x in numbers(60))


def via_for(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        total = 0
        for x in nested(5, 40):
            total += x


async def leaf(n):
    return sum(range(n))


async def middle(n):
    return await leaf(n) + await leaf(n + 1)


async def items(n):
    for i in range(n):
        yield await middle(i % 16 + 4)


async def top(n):
    total = 0
    async for x in items(n):
        total += x
    return total


def via_async(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        coroutine = top(30)
        try:
            coroutine.send(None)
        except StopIteration:
            pass


def document(depth):
    if depth == 0:
        return {"a": [1, 2.5, "x" * 10, None, True], "b": "hello"}
    return dict([("k%d" % i, document(depth - 1)) for i in range(3)]
                + [("list", [document(depth - 1), 1, 2])])


DOC = document(3)


def via_json(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        json.dumps(DOC, indent=2)


def tokens(n):
    for _ in range(n):
        token = work(60)  # @token-work
        yield token  # @yield


def via_tokens(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for token in tokens(20):  # @resume-tokens
            work(60)  # @consume-work


PHASES = (via_list, via_sum, via_join, via_for, via_async, via_json, via_tokens)


def main():
    chosen = [phase for phase in PHASES if phase.__name__ in sys.argv[2:]] or PHASES
    spent = dict.fromkeys((phase.__name__ for phase in chosen), 0.0)
    schedule = [] if "schedule" in sys.argv[2:] else None
    stop_on_signal()
    ready(phases=sorted(spent))
    start = time.perf_counter()
    stop_at = start + DURATION
    while time.perf_counter() < stop_at and not stopped():
        # Each phase runs until its running total catches up with an even share of the total.
        total = sum(spent.values()) + random.uniform(*SLICE) * len(chosen)
        for phase in chosen:
            owed = total / len(chosen) - spent[phase.__name__]
            if owed > 0:
                before, began = time.perf_counter(), time.monotonic_ns()
                phase(owed)
                spent[phase.__name__] += time.perf_counter() - before
                if schedule is not None:
                    schedule.append((began, time.monotonic_ns(), phase.__name__))
    wall = time.perf_counter() - start
    result = {"shares": {name: t / wall for name, t in spent.items()}, "wall": wall}
    if schedule is not None:
        result["schedule"] = schedule
    print(json.dumps(result))


if __name__ == "__main__":
    main()
