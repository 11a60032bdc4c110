"""How often `spyanalyze diff` flags a program that did not change, and how small a change it
finds 95% of the time, on simulated recordings (spyanalyze.simulate): steady and phased
programs, one or several recordings a side, a change spread over the run or confined to its
second half.  Prints Markdown tables (docs/benchmarks.md holds a run and the command).

    .venv/bin/python -m bench.bench_diff_power                # 200 null pairs, 100 per change (~10 min)
    .venv/bin/python -m bench.bench_diff_power --quick        # 60 and 40 (~3 min)
    .venv/bin/python -m bench.bench_diff_power --lengths 5000 --recordings 1
    .venv/bin/python -m bench.bench_diff_power --stay 0.8        # calls of 5 samples

A false alarm is any function flagged significant (Holm-adjusted, alpha 0.05) between two
unchanged runs; a change is found when the changed function is flagged with a positive change.
The smallest change found is the smallest on a grid of shares of the run that was found in at
least 95% of the pairs (searched by bisection: finding gets easier as the change grows).
"""

import argparse
import time

import numpy as np

from spyanalyze import diff, simulate

#: Changes tried, as shares of the run's samples.
GRID = (0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.12, 0.15, 0.20)
FOUND = 0.95


STAY = 0.95


def pair(rng, samples, recordings, shape, change=0.0, where="throughout"):
    """Two sides of ``recordings`` simulated runs each; the second carries the change."""
    before = [simulate.program(rng, samples, shape, stay=STAY) for _ in range(recordings)]
    after = [simulate.program(rng, samples, shape, change, where, stay=STAY) for _ in range(recordings)]
    return before, after


def false_alarms(rng, samples, recordings, shape, trials, **options):
    flagged = 0
    for _ in range(trials):
        flagged += bool(diff(*pair(rng, samples, recordings, shape), **options)["total_significant"].any())
    return flagged / trials


def found_rate(rng, samples, recordings, shape, where, change, trials):
    found = 0
    for _ in range(trials):
        table = diff(*pair(rng, samples, recordings, shape, change, where))
        row = table[table["qualname"] == simulate.CHANGED]
        found += bool(len(row) and row["total_significant"].iloc[0] and row["total_change"].iloc[0] > 0)
    return found / trials


def smallest_found(rng, samples, recordings, shape, where, trials):
    """The smallest change on GRID found in FOUND of the pairs, or None when even the largest
    is not."""
    low, high = -1, len(GRID) - 1
    if found_rate(rng, samples, recordings, shape, where, GRID[high], trials) < FOUND:
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if found_rate(rng, samples, recordings, shape, where, GRID[middle], trials) >= FOUND:
            high = middle
        else:
            low = middle
    return GRID[high]


def percent(value):
    return "> %g%%" % (100 * GRID[-1]) if value is None else "%g%%" % (100 * value)


def main(argv=None):
    global STAY
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2000, 5000, 20000],
                        help="samples per recording (1 kHz: 2, 5 and 20 s)")
    parser.add_argument("--recordings", type=int, nargs="+", default=[1, 3], help="recordings a side")
    parser.add_argument("--null-trials", type=int, default=200)
    parser.add_argument("--trials", type=int, default=100, help="pairs per change tried")
    parser.add_argument("--quick", action="store_true", help="60 null pairs and 40 per change")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--stay", type=float, default=0.95,
                        help="chance a sample keeps the previous one's function "
                             "(calls last 1/(1-stay) samples)")
    args = parser.parse_args(argv)
    STAY = args.stay
    if args.quick:
        args.null_trials, args.trials = 60, 40
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    print("Simulated programs: calls of %g samples on average (stay %g), %d functions; phased: "
          "start-up in the first 30%% +- 2%% of the run.  %d null pairs, %d pairs per change tried; "
          "seed %d.\n" % (1 / (1 - STAY), STAY, len(simulate.FUNCTIONS), args.null_trials, args.trials,
                           args.seed))
    print("| samples a recording | recordings a side | false alarms, steady | false alarms, phased "
          "| binomial test alone, phased | smallest change found 95%: steady | phased, throughout "
          "| phased, second half only |")
    print("|---|---|---|---|---|---|---|---|")
    for samples in args.lengths:
        for recordings in args.recordings:
            cells = [false_alarms(rng, samples, recordings, shape, args.null_trials)
                     for shape in simulate.SHAPES]
            binomial = false_alarms(rng, samples, recordings, "phased", args.null_trials, blocks=0)
            smallest = [smallest_found(rng, samples, recordings, shape, where, args.trials)
                        for shape, where in (("steady", "throughout"), ("phased", "throughout"),
                                             ("phased", "second half"))]
            print("| %d | %d | %.1f%% | %.1f%% | %.0f%% | %s |" % (
                samples, recordings, 100 * cells[0], 100 * cells[1], 100 * binomial,
                " | ".join(percent(s) for s in smallest)), flush=True)
    print("\n(%.0f s)" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
