"""The tables every view, filter and export reads: a recording's distinct stacks, what a sample
weighs, and how a thread is labelled."""

import functools

import numpy as np
import pandas as pd

#: What a view or an export can weigh a sample by: one each, wall time, or CPU time.
WEIGHTS = ("samples", "wall", "cpu")

#: A gap between two samples of a thread longer than this many nominal intervals is not
#: attributed to the sample before it (see ``sample_weights``).
MAX_GAP_INTERVALS = 20

class StackTable:
    """The distinct stacks of a recording plus the derived arrays views need.

    ``tuples[i]`` is stack i as frame ids, root first.  The long form (one row per (stack,
    depth)) is what turns per-stack sample counts into per-function counts without a loop per
    sample: count samples per stack, then spread each stack's count over its frames.
    """

    def __init__(self, tuples):
        self.tuples = list(tuples)
        self._pairs = {}

    def __len__(self):
        return len(self.tuples)

    @functools.cached_property
    def lengths(self):
        return np.fromiter(map(len, self.tuples), dtype=np.int64, count=len(self.tuples))

    @functools.cached_property
    def long(self):
        """(stack, frame, depth) arrays, one entry per frame of every stack."""
        lengths = self.lengths
        total = int(lengths.sum())
        stack = np.repeat(np.arange(len(self.tuples), dtype=np.int64), lengths)
        frame = np.fromiter((f for s in self.tuples for f in s), dtype=np.int64, count=total)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        depth = np.arange(total, dtype=np.int64) - starts
        return stack, frame, depth

    @functools.cached_property
    def leaf(self):
        """The innermost frame id of each stack, -1 when the stack is empty."""
        leaf = np.full(len(self.tuples), -1, dtype=np.int64)
        stack, frame, _depth = self.long
        if len(frame):
            ends = np.cumsum(self.lengths) - 1
            nonempty = self.lengths > 0
            leaf[nonempty] = frame[ends[nonempty]]
        return leaf

    def pairs(self, key, codes):
        """Distinct (stack, code) pairs for a per-frame coding: a recursive function counts once
        per stack in its total.  Cached per coding name."""
        if key not in self._pairs:
            stack, frame, _depth = self.long
            n = int(codes.max()) + 1 if len(codes) else 1
            combined = np.unique(stack * n + codes[frame])
            self._pairs[key] = (combined // n, combined % n)
        return self._pairs[key]

    def outermost(self, frame_mask):
        """Per stack, the outermost frame for which ``frame_mask`` (by frame id) is true and
        the frame just inside it: two arrays of frame ids, -1 where there is none."""
        found = np.full(len(self.tuples), -1, dtype=np.int64)
        inside = np.full(len(self.tuples), -1, dtype=np.int64)
        stack, frame, _depth = self.long
        hits = np.flatnonzero(np.asarray(frame_mask)[frame]) if len(frame) else frame
        if len(hits):
            first = hits[np.unique(stack[hits], return_index=True)[1]]
            found[stack[first]] = frame[first]
            following = first + 1
            within = following < len(frame)
            within[within] = stack[following[within]] == stack[first[within]]
            inside[stack[first[within]]] = frame[following[within]]
        return found, inside

    @functools.cached_property
    def frame(self):
        return pd.DataFrame({"frames": pd.Series(self.tuples, dtype=object),
                             "depth": self.lengths, "leaf": self.leaf}).rename_axis("stack")


def thread_keys(samples):
    """One int64 per sample naming its thread, ``pid << 32 | tid`` (the id columns may be
    narrower than 64 bits, where the shift would overflow)."""
    return samples["pid"].to_numpy().astype(np.int64) << 32 | samples["tid"].to_numpy().astype(np.int64)


def narrowest_id(values):
    """Ids as int32 when they fit (4 bytes a sample instead of 8), else as they are (int64)."""
    limits = np.iinfo(np.int32)
    if len(values) == 0 or (values.min() >= limits.min and values.max() <= limits.max):
        return values.astype(np.int32)
    return values


def check_weight(weight):
    if weight not in WEIGHTS:
        raise ValueError("unknown weight %r (choose samples, wall or cpu)" % (weight,))


def thread_display_name(name, tid):
    return name if isinstance(name, str) and name else "tid %d" % tid


#: Where the thread ids of asyncio tasks put where threads go begin (see
#: ``filters.tasks_as_threads``): above every kernel's pid_max (at most 2**22), below 2**31.
TASK_TIDS = 0x7FFF0000


def thread_label(name, tid):
    """``name (tid N)``, or just ``tid N`` for a thread without a name, and just the name of a
    task put where threads go (its thread id is made up)."""
    name = str(name)
    return name if name == "tid %d" % tid or tid >= TASK_TIDS else "%s (tid %d)" % (name, tid)


def sample_weights(t, key, interval_ns):
    """Wall time each sample stands for, and the same in nominal intervals (``ticks``).

    A sample stands for the time until the same thread's next sample.  When the recorder
    falls behind (its CPU was taken, or a stack took long to read), it skips sampling ticks,
    and what the thread did then is best told by the sample before the gap: the state that
    made the round slow is the state the thread was still in.  Counting each sample once
    instead would under-weigh exactly the stacks that are slow to read.

    ``key`` identifies the thread (pid and tid combined).  The nominal interval is the median
    gap between consecutive samples of a thread (the rate actually achieved), else the header
    interval.  A thread's last sample, and a sample followed by a gap longer than
    ``MAX_GAP_INTERVALS`` nominal intervals (the recorder stopped, or the thread was not
    sampled in between), stands for one nominal interval, so a gap we know nothing about is
    never charged to the stack before it.
    """
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    codes, _uniques = pd.factorize(key)
    codes = codes.astype(np.uint16 if codes.max() < 65536 else np.int64)
    order = np.argsort(codes, kind="stable")      # radix sort on small codes; keeps time order
    ts = t[order]
    gap = np.empty(n, dtype=np.int64)
    gap[-1] = 0
    np.subtract(ts[1:], ts[:-1], out=gap[:-1])
    last = np.empty(n, dtype=bool)
    last[-1] = True
    np.not_equal(codes[order][1:], codes[order][:-1], out=last[:-1])
    valid = gap[~last]
    valid = valid[valid > 0]
    nominal = int(np.median(valid)) if len(valid) else int(interval_ns or 1)
    if nominal <= 0:
        nominal = int(interval_ns or 1)
    bad = last | (gap <= 0) | (gap > MAX_GAP_INTERVALS * nominal)
    weights_sorted = np.where(bad, nominal, gap)
    weights = np.empty(n, dtype=np.int64)
    weights[order] = weights_sorted
    return weights, weights / float(nominal)


def cpu_weights(thread_codes, cpu_delta, running):
    """CPU time each sample stands for, from each sample's CPU time since the thread's
    previous one (``cpu_delta``, as recorded), in time order.

    The CPU time between two samples of a thread goes to the first when it found the thread
    running, or the second found it asleep; else to the second: the thread woke in between.
    A thread found running just after it was found asleep counts as asleep: it has woken but
    may still be queued for a CPU or on its way back from the call it waited in (its stack
    still there), and the work it woke for is where it is next found.
    So a sample stands, like its wall time (``sample_weights``), for the CPU time its thread
    used until its next sample, unless it caught the thread on its way back from a wait.
    Left on the sample that read it, the CPU time of a burst of work would go to whatever the
    thread did next, most often the call it then waits in.  Each thread's total stays the same.
    ``thread_codes`` numbers the samples' threads (``pd.factorize`` of pid and tid).
    """
    n = len(cpu_delta)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    codes = np.asarray(thread_codes)
    order = np.argsort(codes, kind="stable")      # keeps time order within a thread
    delta = cpu_delta[order].astype(np.int64)
    awake = np.asarray(running)[order]
    same = codes[order][1:] == codes[order][:-1]  # (j, j + 1): two samples of one thread
    woken = np.zeros(n, dtype=bool)               # running, found asleep the sample before
    woken[1:] = same & ~awake[:-1] & awake[1:]
    back = same & (awake[:-1] & ~woken[:-1] | ~awake[1:])
    weights = np.zeros(n, dtype=np.int64)
    weights[:-1] += np.where(back, delta[1:], 0)
    weights[1:] += np.where(back, 0, delta[1:])
    weights[0] += delta[0]
    result = np.empty(n, dtype=np.int64)
    result[order] = weights
    return result
