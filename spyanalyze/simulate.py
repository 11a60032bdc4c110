"""Simulated recordings, built in memory, for measuring the diff's test: how often it flags a
program that did not change (false alarms) and how small a change it finds (power).

A simulated program is one thread whose leaf function follows a Markov chain: each sample keeps
the previous sample's function with probability ``stay`` (so a call lasts 1/(1-stay) samples on
average, and samples are autocorrelated as real ones are), else draws one from the shares of
the current phase.  A *steady* program has one phase; a *phased* one starts up (its first
``STARTUP`` of the samples, a boundary that moves from run to run) with other functions than
it then works with.  A change adds ``CHANGED`` with a share of the samples: in every phase, or
only in the second half of the run (the same overall share, twice as dense there).
"""

import numpy as np
import pandas as pd

from spyanalyze.recording import Recording

MODULE = "app/job.py"
STARTUP_FUNCTIONS = {"import_modules": 0.4, "read_config": 0.3, "connect": 0.3}
WORK_FUNCTIONS = {"query": 0.35, "parse_row": 0.25, "encode_json": 0.2, "write_out": 0.15, "log": 0.05}
CHANGED = "validate"
FUNCTIONS = ["main"] + list(STARTUP_FUNCTIONS) + list(WORK_FUNCTIONS) + [CHANGED]
#: Share of a phased run spent starting up, and how much that moves between runs.
STARTUP = 0.3
STARTUP_JITTER = 0.02
SHAPES = ("steady", "phased")
PLACES = ("throughout", "second half")


def _phase_weights(functions, added):
    """Shares over FUNCTIONS for a phase of ``functions`` plus CHANGED at share ``added``."""
    weights = np.zeros(len(FUNCTIONS))
    for name, share in functions.items():
        weights[FUNCTIONS.index(name)] = share * (1 - added)
    weights[FUNCTIONS.index(CHANGED)] = added
    return weights


def program(rng, samples, shape="steady", change=0.0, where="throughout", stay=0.95, interval_ns=1_000_000):
    """A Recording of ``samples`` samples of a simulated program (module docstring).

    ``change`` is CHANGED's share of the whole run, added ``where`` (``throughout`` or in the
    ``second half``).
    """
    if shape not in SHAPES or where not in PLACES:
        raise ValueError("shape is one of %s and where one of %s" % (SHAPES, PLACES))
    position = np.arange(samples) / samples
    dense = 2 * change if where == "second half" else change
    changed = (position >= 0.5) if where == "second half" else np.ones(samples, dtype=bool)
    starting = np.zeros(samples, dtype=bool)
    if shape == "phased":
        starting = position < STARTUP + rng.uniform(-STARTUP_JITTER, STARTUP_JITTER)
    # one row of shares per (starting, changed) combination: 2 * starting + changed
    table = np.array([_phase_weights(functions, added)
                      for functions in (WORK_FUNCTIONS, STARTUP_FUNCTIONS) for added in (0.0, dense)])
    cumulative = np.cumsum(table, axis=1)
    cumulative /= cumulative[:, -1:]
    row = 2 * starting + changed
    fresh = (rng.random(samples)[:, None] > cumulative[row]).sum(axis=1)
    redraw = rng.random(samples) >= stay
    redraw[0] = True
    choice = fresh[np.maximum.accumulate(np.where(redraw, np.arange(samples), 0))]
    return _recording(choice, interval_ns)


def _recording(leaf, interval_ns):
    """A one-thread Recording whose sample i has the stack main -> FUNCTIONS[leaf[i]]."""
    frames = pd.DataFrame({"file": "/src/" + MODULE, "name": FUNCTIONS, "qualname": FUNCTIONS,
                           "line": np.arange(len(FUNCTIONS)) * 10 + 1, "column": -1, "source": "",
                           "module": MODULE, "kind": "user"})
    frames["label"] = frames["qualname"] + " (" + MODULE + ":" + frames["line"].astype(str) + ")"
    stacks = [(0,)] + [(0, f) for f in range(1, len(FUNCTIONS))]
    n = len(leaf)
    ones = np.full(n, interval_ns, dtype=np.int64)
    samples = pd.DataFrame({"t": np.arange(n, dtype=np.int64) * interval_ns, "pid": np.int64(1),
                            "tid": np.int64(1), "stack": np.maximum(leaf, 0).astype(np.int64),
                            "wall": ones, "ticks": np.ones(n), "cpu": ones})
    header = {"interval_ns": interval_ns, "pid": 1}
    return Recording(samples, frames, stacks, pd.DataFrame(), pd.DataFrame(), header, {}, {"source": None})
