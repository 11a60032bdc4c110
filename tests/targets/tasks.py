"""An asyncio program with a thousand tasks, two of them busy.  Plain Python, runs on 3.8+.

Usage: ``python tasks.py [DURATION=30]``.

A thousand tasks wait on an event that is never set; the tasks named ``alpha`` and ``beta`` take
turns on the loop, ``alpha`` computing about three times as long a slice as ``beta`` each time
(``alpha_work`` and ``beta_work``).  The ready line (see _truth.py) comes once every task is
waiting; at the end the target prints what it measured, as shares of the loop's wall time:
``{"work": {name: in the task's work}, "shares": {name: in the task's steps}, "steps": {name:
how many times it was resumed}}``.  A step is a callback of a ``Handle`` the loop runs
(``Handle._run``, Lib/asyncio/events.py): the task's resumption, its work, its way to the next
``await`` and the loop's scheduling of its next step.  A profiler's share of a task lies between
the two: its work and the frames of its coroutine, without the loop's part.  SIGUSR1 ends the
run before DURATION (see _truth.py).
"""

import asyncio
import asyncio.events
import json
import time

from _truth import duration_arg, ready, stop_on_signal, stopped
from _work import work

DURATION = duration_arg()
spent = {"alpha": 0.0, "beta": 0.0}
working = {"alpha": 0.0, "beta": 0.0}
steps = {"alpha": 0, "beta": 0}


def alpha_work():
    work(3000)


def beta_work():
    work(1000)


def timed_run(handle, _run=asyncio.events.Handle._run):
    task = getattr(handle._callback, "__self__", None)  # a task's step, or its wake-up
    name = task.get_name() if isinstance(task, asyncio.Task) else None
    if name not in spent:
        return _run(handle)
    started = time.perf_counter()
    try:
        return _run(handle)
    finally:
        spent[name] += time.perf_counter() - started


asyncio.events.Handle._run = timed_run


async def busy(name, step, until):
    while time.monotonic() < until and not stopped():
        started = time.perf_counter()
        step()
        working[name] += time.perf_counter() - started
        steps[name] += 1
        await asyncio.sleep(0)


async def main():
    never = asyncio.Event()
    idle = [asyncio.create_task(never.wait(), name="idle-%d" % i) for i in range(1000)]
    await asyncio.sleep(0.1)  # every idle task waiting
    stop_on_signal()
    ready(tasks=len(idle))
    start = time.monotonic()
    until = start + DURATION
    await asyncio.gather(asyncio.create_task(busy("alpha", alpha_work, until), name="alpha"),
                         asyncio.create_task(busy("beta", beta_work, until), name="beta"))
    elapsed = time.monotonic() - start
    print(json.dumps({"shares": {name: seconds / elapsed for name, seconds in spent.items()},
                      "work": {name: seconds / elapsed for name, seconds in working.items()},
                      "steps": steps}))
    for task in idle:
        task.cancel()


asyncio.run(main())
