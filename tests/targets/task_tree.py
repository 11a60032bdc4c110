"""A program whose asyncio tasks wait for each other, for ``spyrec where --tasks``.

``main`` gathers ``parent`` and ``gatherer``; ``parent`` awaits its task ``child``, which waits in
``middle`` -> ``leaf`` -> ``Event.wait``; ``gatherer`` gathers two ``worker`` tasks that wait
on the same event; ``ping`` and ``pong`` await each other, a deadlock; from 3.11 ``grouper``
waits for the two ``grouped-N`` tasks of its TaskGroup; ``spinner`` keeps the loop busy.
Prints a JSON line once every task is waiting, then waits until killed.  The ``# @`` marks
name the lines each task waits on.
"""

import asyncio
import json


async def leaf(event):
    await event.wait()  # @leaf


async def middle(event):
    await leaf(event)  # @middle


async def parent(event):
    child = asyncio.create_task(middle(event), name="child")
    await child  # @parent


async def worker(event):
    await event.wait()  # @worker


async def gatherer(event):
    await asyncio.gather(asyncio.create_task(worker(event), name="worker-1"),  # @gatherer
                         asyncio.create_task(worker(event), name="worker-2"))


PAIR = {}


async def one_of_a_pair(other):
    await asyncio.sleep(0.001)
    await PAIR[other]  # @pair


async def grouped(event):
    """From 3.11: two tasks in a TaskGroup, which this task waits for at the group's end."""
    async with asyncio.TaskGroup() as group:  # @group
        group.create_task(worker(event), name="grouped-1")
        group.create_task(worker(event), name="grouped-2")


async def spinner():
    while True:
        sum(range(2000))
        await asyncio.sleep(0)


async def main():
    event = asyncio.Event()
    spin = asyncio.create_task(spinner(), name="spinner")
    tasks = [asyncio.create_task(parent(event), name="parent"),
             asyncio.create_task(gatherer(event), name="gatherer")]
    if hasattr(asyncio, "TaskGroup"):
        asyncio.create_task(grouped(event), name="grouper")
    for name, other in (("ping", "pong"), ("pong", "ping")):
        PAIR[name] = asyncio.create_task(one_of_a_pair(other), name=name)
    for _ in range(5):
        await asyncio.sleep(0.01)
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.gather(*tasks)  # @main
    spin.cancel()


asyncio.run(main())
