"""An asyncio program with a thousand tasks, two of them busy.  Plain Python, runs on 3.8+.

Usage: ``python tasks.py [DURATION=30]``.

A thousand tasks wait on an event that is never set; the tasks named ``alpha`` and ``beta`` take
turns on the loop, ``alpha`` computing about three times as long a slice as ``beta`` each time
(``alpha_work`` and ``beta_work``).  The ready line (see _truth.py) comes once every task is
waiting; at the end the target prints what it measured: ``{"shares": {name: share of the
loop's wall time that task ran, from each resumption to its next await}, "steps": {name:
how many times it was resumed}}``.
"""

import asyncio
import json
import time

from _truth import duration_arg, ready
from _work import work

DURATION = duration_arg()
spent = {"alpha": 0.0, "beta": 0.0}
steps = {"alpha": 0, "beta": 0}


def alpha_work():
    work(3000)


def beta_work():
    work(1000)


async def busy(name, step, until):
    resumed = time.perf_counter()
    while time.monotonic() < until:
        step()
        spent[name] += time.perf_counter() - resumed  # all it did since it was resumed
        steps[name] += 1
        await asyncio.sleep(0)
        resumed = time.perf_counter()


async def main():
    never = asyncio.Event()
    idle = [asyncio.create_task(never.wait(), name="idle-%d" % i) for i in range(1000)]
    await asyncio.sleep(0.1)  # every idle task waiting
    ready(tasks=len(idle))
    start = time.monotonic()
    until = start + DURATION
    await asyncio.gather(asyncio.create_task(busy("alpha", alpha_work, until), name="alpha"),
                         asyncio.create_task(busy("beta", beta_work, until), name="beta"))
    elapsed = time.monotonic() - start
    print(json.dumps({"shares": {name: seconds / elapsed for name, seconds in spent.items()},
                      "steps": steps}))
    for task in idle:
        task.cancel()


asyncio.run(main())
