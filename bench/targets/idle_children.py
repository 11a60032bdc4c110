"""A busy process with idle Python children: what following descendants costs a recorder.

Usage: ``python idle_children.py CHILDREN SECONDS``; forks CHILDREN processes that sleep, prints
a ready line once they exist, then is busy until the end.
"""

import json
import os
import sys
import time


def main():
    children, seconds = int(sys.argv[1]), float(sys.argv[2])
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            time.sleep(seconds + 5)
            os._exit(0)
        pids.append(pid)
    print(json.dumps({"pid": os.getpid(), "children": pids}), flush=True)
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        for i in range(500):
            x += i * i
    for pid in pids:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


main()
