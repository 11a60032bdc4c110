"""Two threads handing a byte to each other through pipes as fast as they can.  Plain
Python, runs on 3.6+.

Usage: ``python handoffs_pipe.py [DURATION=30]``.

The main thread writes a byte to "pong" and waits for it back (@ping); "pong" waits for it
(@pong) and sends it back: each thread leaves its CPU tens of thousands of times a second.
The ready line (see _truth.py) has ``main`` and the thread "pong".
"""

import os
import threading
import time

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()


def pong(there, back, arrived):
    arrived.record = thread_record()
    arrived.set()
    while True:
        os.write(back, os.read(there, 1))  # @pong


def main():
    there_r, there_w = os.pipe()
    back_r, back_w = os.pipe()
    arrived = threading.Event()
    threading.Thread(target=pong, args=(there_r, back_w, arrived), name="pong",
                     daemon=True).start()
    arrived.wait()
    ready(main=thread_record(), threads={"pong": arrived.record})
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline:
        os.write(there_w, b"x")
        os.read(back_r, 1)  # @ping


main()
