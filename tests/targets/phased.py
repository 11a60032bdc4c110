"""Target: a job in two phases, on its own CPU clock: start-up (load_config and build_index
share STARTUP seconds of CPU), then work (query and encode share WORK seconds).  With --extra
the work phase also spends EXTRA of its time in validate(), a function the plain job never
calls: a change that lives in one phase only.

    python phased.py STARTUP WORK [--extra EXTRA] [--report FILE]

Like split.py it runs in short slices of random length, balanced on its CPU clock, and at the
end prints (and with --report writes) one JSON line with the seconds spent in each function.
Plain Python that runs on 3.6+.
"""

import json
import random
import sys
import time

from _work import spin

# Seconds of CPU per round of a phase, drawn at random so slices do not beat against the
# sampler's fixed interval.
SLICE = (0.002, 0.02)


def load_config(seconds):
    return spin(seconds)


def build_index(seconds):
    return spin(seconds)


def query(seconds):
    return spin(seconds)


def encode(seconds):
    return spin(seconds)


def validate(seconds):
    return spin(seconds)


def run_phase(seconds, shares, spent):
    """Run each (function, share) until the phase's CPU is spent, keeping to the shares
    (the phase's functions are its own, so what ``spent`` holds for them is this phase's)."""
    used = 0.0
    while used < seconds:
        total = used + random.uniform(*SLICE)
        for function, share in shares:
            owed = share * total - spent.get(function.__name__, 0.0)
            if owed > 0:
                before = time.process_time()
                function(owed)
                took = time.process_time() - before
                spent[function.__name__] = spent.get(function.__name__, 0.0) + took
                used += took


def main(argv):
    startup, work = float(argv[1]), float(argv[2])
    extra = float(argv[argv.index("--extra") + 1]) if "--extra" in argv else 0.0
    report = argv[argv.index("--report") + 1] if "--report" in argv else None
    spent = {}
    run_phase(startup, [(load_config, 0.5), (build_index, 0.5)], spent)
    shares = [(query, 0.6 * (1 - extra)), (encode, 0.4 * (1 - extra))]
    run_phase(work, shares + ([(validate, extra)] if extra else []), spent)
    line = json.dumps(spent, sort_keys=True)
    print(line)
    sys.stdout.flush()
    if report:
        with open(report, "w") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main(sys.argv)
