"""Run a Python script as ``__main__`` and say where its time went.

    python timed_run.py RESULT_FILE SCRIPT [ARGS...]

Appends one JSON line to RESULT_FILE when the script ends: its wall time, CPU time, time
waiting for a CPU and time blocked (the rest), from /proc/self/schedstat (the main thread's:
the scripts run here do their work on it).
"""

import json
import runpy
import sys
import time


def schedstat():
    with open("/proc/self/schedstat") as f:
        run, wait, _ = map(int, f.read().split())
    return run / 1e9, wait / 1e9


def main():
    result, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    start = time.perf_counter()
    run0, wait0 = schedstat()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        wall = time.perf_counter() - start
        run1, wait1 = schedstat()
        with open(result, "a") as f:
            f.write(json.dumps({"wall": wall, "cpu": run1 - run0, "wait": wait1 - wait0,
                                "blocked": wall - (run1 - run0) - (wait1 - wait0)}) + "\n")


if __name__ == "__main__":
    main()
