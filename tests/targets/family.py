"""A target that starts child processes, each busy in a function of its own.  Plain Python,
runs on 3.8+.

Usage: ``python family.py MODE [SECONDS=2] [PYTHON]``, MODE one of

* ``pool-fork``, ``pool-spawn``, ``pool-forkserver``: a ``multiprocessing.Pool`` of 4 (that
  start method) given 4 tasks that meet at a barrier first, so each worker takes one; worker
  ``i`` spins in ``hot_i``;
* ``fork``: ``os.fork()`` twice, without exec; child ``i`` spins in ``hot_i``;
* ``exec``: a forked child that spins in ``hot_1`` for a while, then execs PYTHON on this file
  in mode ``child``, where it spins in ``hot_0``;
* ``other``: ``subprocess`` runs PYTHON (another interpreter) on this file in mode ``child``,
  where it spins in ``hot_0``; and a ``sleep`` process, which is no Python.

The ready line (see _truth.py) comes first, then the children start after ``START_AFTER`` s
(a recorder attached by then sees them appear); at the end one more JSON line maps each child's
pid to its function: ``{"children": {pid: "hot_i"}}``.
"""

import json
import multiprocessing
import os
import subprocess
import sys
import time

from _truth import ready

START_AFTER = 0.5


def spin(seconds):
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        for i in range(200):
            x += i * i


def hot_0(seconds):
    spin(seconds)


def hot_1(seconds):
    spin(seconds)


def hot_2(seconds):
    spin(seconds)


def hot_3(seconds):
    spin(seconds)


HOT = [hot_0, hot_1, hot_2, hot_3]
barrier = None


def _meet(shared):
    global barrier
    barrier = shared


def task(args):
    i, seconds = args
    barrier.wait()  # every worker holds a task: none takes two
    HOT[i](seconds)
    return os.getpid(), HOT[i].__name__


def pool(method, seconds):
    context = multiprocessing.get_context(method)
    shared = context.Barrier(4)
    with context.Pool(4, initializer=_meet, initargs=(shared,)) as workers:
        return dict(workers.map(task, [(i, seconds) for i in range(4)], chunksize=1))


def forked(seconds):
    children = {}
    for i in range(2):
        pid = os.fork()
        if pid == 0:
            HOT[i](seconds)
            os._exit(0)
        children[pid] = HOT[i].__name__
    for pid in children:
        os.waitpid(pid, 0)
    return children


def execs(python, seconds):
    pid = os.fork()
    if pid == 0:
        hot_1(seconds)
        os.execv(python, [python, os.path.abspath(__file__), "child", str(seconds)])
    os.waitpid(pid, 0)
    return {pid: "hot_1 then hot_0"}


def other(python, seconds):
    sleeper = subprocess.Popen(["sleep", str(seconds + 1)])
    child = subprocess.Popen([python, os.path.abspath(__file__), "child", str(seconds)])
    child.wait()
    sleeper.wait()
    return {child.pid: "hot_0", sleeper.pid: None}


def main():
    mode = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    if mode == "child":
        hot_0(seconds)
        return
    if mode == "exec":
        seconds /= 2
    ready(mode=mode)
    time.sleep(START_AFTER)
    if mode.startswith("pool-"):
        children = pool(mode[5:], seconds)
    elif mode == "fork":
        children = forked(seconds)
    elif mode == "exec":
        children = execs(sys.argv[3], seconds)
    else:
        children = other(sys.argv[3], seconds)
    print(json.dumps({"children": children}), flush=True)


if __name__ == "__main__":
    main()
