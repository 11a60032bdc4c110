"""Threads waiting in different system calls, and one running.  Plain Python, runs on 3.6+.

Usage: ``python waits.py [DURATION=30]``.

* "sleeper": ``nap`` @wait-sleep, in ``time.sleep`` (clock_nanosleep from 3.11, select
  before);
* "locker": ``take`` @wait-lock, acquiring a lock the main thread holds (futex);
* "reader": ``receive`` @wait-recv, in ``recv`` on a socket nothing is written to (recvfrom);
* "spinner": ``spin`` @wait-spin, running;
* the main thread: ``main`` @wait-main, in ``Event.wait`` (futex).

The ready line (see _truth.py) has ``main`` and ``threads`` (by name).
"""

import socket
import threading
import time

from _truth import duration_arg, ready, thread_record

DURATION = duration_arg()
records = {}
lock = threading.Lock()
done = threading.Event()
quiet, _other_end = socket.socketpair()


def arrive(name):
    records[name] = thread_record()


def nap():
    arrive("sleeper")
    time.sleep(DURATION)  # @wait-sleep


def take():
    arrive("locker")
    lock.acquire()  # @wait-lock


def receive():
    arrive("reader")
    quiet.recv(16)  # @wait-recv


def spin():
    arrive("spinner")
    deadline = time.time() + DURATION
    while time.time() < deadline: pass  # @wait-spin


def main():
    lock.acquire()
    for name, run in (("sleeper", nap), ("locker", take), ("reader", receive),
                      ("spinner", spin)):
        threading.Thread(target=run, name=name, daemon=True).start()
    while len(records) < 4:
        time.sleep(0.01)
    time.sleep(0.2)  # each thread into its call
    ready(main=thread_record(), threads=records)
    done.wait(DURATION)  # @wait-main


if __name__ == "__main__":
    main()
