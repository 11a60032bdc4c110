"""Target: a thread that calls into another interpreter and works there (3.12+).

    python subinterpreters.py [DURATION]

The main thread spins in main_work(); a thread named "caller" creates an interpreter and runs
sub_work() in it (3.14+ concurrent.interpreters, 3.13 _interpreters, 3.12 _xxsubinterpreters),
from call_into(), so that thread has a thread state in each interpreter: the caller's frames
in the first, sub_work's in the other.  Each measures its own CPU time.  The ready line comes
once sub_work runs; the last line holds what they measured.
"""

import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def spin_for(seconds):
    """Burn CPU for ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    total = 0
    while time.thread_time() < end:
        total += sum(i * i for i in range(200))  # @spin
    return total


def sub_work(seconds, started):
    """Run in the other interpreter: say so through a file, then spin."""
    with open(started, "w") as f:
        f.write(json.dumps({"sub_work": time.thread_time()}))
    spin_for(seconds)  # @sub_work


def main_work(seconds):
    spin_for(seconds)  # @main_work


def call_into(seconds, started):
    code = "import sys; sys.path.insert(0, %r); import subinterpreters; " \
           "subinterpreters.sub_work(%r, %r)" % (HERE, seconds, started)
    if sys.version_info >= (3, 14):
        from concurrent import interpreters
        interpreters.create().exec(code)  # @call_into
    elif sys.version_info >= (3, 13):
        import _interpreters
        _interpreters.exec(_interpreters.create(), code)  # @call_into
    else:
        import _xxsubinterpreters
        _xxsubinterpreters.run_string(_xxsubinterpreters.create(), code)  # @call_into


def main():
    sys.path.insert(0, HERE)
    import _truth
    seconds = _truth.duration_arg(4.0)
    started = os.path.join(HERE if os.access(HERE, os.W_OK) else "/tmp",
                           ".subinterpreters-%d" % os.getpid())
    record = {}

    def caller():
        record.update(_truth.thread_record())
        call_into(seconds, started)

    thread = threading.Thread(target=caller, name="caller", daemon=True)
    thread.start()
    while not os.path.exists(started):
        time.sleep(0.005)
    os.unlink(started)
    _truth.ready(main=_truth.thread_record(), threads={"caller": record})
    main_work(seconds)
    thread.join()


if __name__ == "__main__":
    main()
