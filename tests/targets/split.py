"""Target: spend SHARE of its CPU time in heavy() and the rest in light(), for SECONDS of CPU.

    python split.py 0.75 2 [--report FILE] [--sleeper]

It alternates in short slices of random length and balances them on its own CPU clock, so at
any moment the split so far is close to SHARE; at the end it prints (and with --report also
writes) one JSON line with what it measured: {"heavy": s, "light": s, "heavy_share": x, ...}.
--sleeper starts a second thread named "sleeper" that only sleeps (IDLE samples, a real thread
name to filter on).  Plain Python that runs on 3.6+.
"""

import json
import random
import sys
import threading
import time

from _work import spin

# Seconds of CPU per heavy+light round, drawn at random: a fixed slice would beat against the
# sampler's fixed interval (aliasing) and the samples would see a phase, not the split.
SLICE = (0.002, 0.02)


def heavy(seconds):
    return spin(seconds)  # @heavy


def light(seconds):
    return spin(seconds)  # @light


def nap(stop):
    while not stop.is_set():
        stop.wait(0.05)  # @nap


def main(argv):
    share = float(argv[1])
    seconds = float(argv[2])
    report = argv[argv.index("--report") + 1] if "--report" in argv else None
    stop = threading.Event()
    if "--sleeper" in argv:
        threading.Thread(target=nap, args=(stop,), name="sleeper", daemon=True).start()
    spent = {"heavy": 0.0, "light": 0.0}
    start_cpu = time.process_time()
    start_wall = time.time()
    while spent["heavy"] + spent["light"] < seconds:
        total = spent["heavy"] + spent["light"] + random.uniform(*SLICE)
        # run each function until its running total catches up with its target share
        for name, function, target in (("heavy", heavy, share), ("light", light, 1 - share)):
            owed = target * total - spent[name]
            if owed > 0:
                before = time.process_time()
                function(owed)
                spent[name] += time.process_time() - before
    stop.set()
    result = {"heavy": spent["heavy"], "light": spent["light"],
              "heavy_share": spent["heavy"] / (spent["heavy"] + spent["light"]),
              "cpu": time.process_time() - start_cpu, "wall": time.time() - start_wall}
    line = json.dumps(result, sort_keys=True)
    print(line)
    sys.stdout.flush()
    if report:
        with open(report, "w") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main(sys.argv)
