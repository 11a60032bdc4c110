"""A thread that naps at two lines in turn, next to a thread that spins.  Runs on 3.6+.

Usage: ``python naps.py [DURATION=30] [LOG]``.

"napper" sleeps a few milliseconds in ``nap_a`` (@nap-a), then in ``nap_b`` (@nap-b), and so on;
"spinner" and "spinner2" keep the GIL busy and pass it between them every switch interval, so
every wake-up of the napper also waits for the GIL, and the GIL changes hands while it sleeps.  A
recorder that keeps a sleeping thread's last stack instead of reading it again must notice each
time the thread has run in between.  LOG receives one line per nap, ``<start ns> <a|b> <end
ns>`` (monotonic clock); both instants are taken on the nap's own line, so the napper is at that
line for the whole of [start, end].  The ready line (see _truth.py) carries both threads.
"""

import sys
import threading
import time

from _truth import duration_arg, ready, thread_record

#: Nap lengths in ms, cycled: different phases against any sampling grid, and some long
#: enough for the GIL to change hands several times while the napper sleeps.
NAPS_MS = (2, 5, 3, 30, 4, 20)

clock = getattr(time, "monotonic_ns", lambda: int(time.monotonic() * 1e9))


def nap_a(seconds):
    start = clock(); time.sleep(seconds); end = clock()  # @nap-a
    return start, end


def nap_b(seconds):
    start = clock(); time.sleep(seconds); end = clock()  # @nap-b
    return start, end


def arrive(arrived):
    arrived.record = thread_record()
    arrived.set()


def napper(deadline, log, arrived):
    arrive(arrived)
    n = 0
    while time.time() < deadline:
        which, nap = ("a", nap_a) if n % 2 == 0 else ("b", nap_b)
        start, end = nap(NAPS_MS[n % len(NAPS_MS)] / 1000.0)
        if log:
            log.write("%d %s %d\n" % (start, which, end))
            log.flush()
        n += 1


def spinner(deadline, arrived):
    arrive(arrived)
    n = 0
    while time.time() < deadline:
        n += 1


def main():
    deadline = time.time() + duration_arg()
    log = open(sys.argv[2], "w") if len(sys.argv) > 2 else None
    info = {}
    threads = []
    for name, target, args in (("napper", napper, (deadline, log)), ("spinner", spinner, (deadline,)),
                               ("spinner2", spinner, (deadline,))):
        arrived = threading.Event()
        thread = threading.Thread(target=target, name=name, args=args + (arrived,), daemon=True)
        thread.start()
        arrived.wait()
        threads.append(thread)
        info[name] = arrived.record
    ready(main=thread_record(), threads=info)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
