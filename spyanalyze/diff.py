"""Compare recordings before and after a change (one or several a side): per function (or
line, or file), the share of each side's samples, the change, and whether the change is
larger than the noise of sampling and of running the program again.

Matching
    Functions are matched by (module-relative path, qualified name), never by absolute path or
    line, so recordings from another machine, virtualenv or commit line up (see
    ``paths.module_paths`` for how paths are made relative).  When the two recordings chose
    different roots for user code (``app/db.py`` in one, ``db.py`` in the other), a path left
    unmatched is paired with the unmatched path of the other recording that it ends with, when
    exactly one does.  Per-line diffs also match on the line number, so they are only meaningful
    between recordings of the same source.

The test
    For each function f, recording r has weight w_r(f) out of W_r (samples by default, or wall
    or CPU time) and share p_r = w_r(f) / W_r; a side's share is the mean over its recordings.
    The change d = p_b - p_a is tested against H0 "both sides have the same share" with the
    two-sided statistic d / se, where se^2 is the largest of these variance estimates:

    * the two-proportion (binomial) variance under H0, with the pooled share
      p0 = (p_a n_a + p_b n_b) / (n_a + n_b) and se^2 = p0 (1 - p0) (1/n_a + 1/n_b); for time
      weights n_r is Kish's effective sample size (sum w)^2 / sum w^2.  It assumes that
      samples are independent, and they are not: a function that runs for 50 ms is in 50
      consecutive samples at 1 kHz, so alone it flags changes that are not there.  It stays
      as a floor for recordings too short to cut.
    * the paired-batch variance (``paired_variance``): every recording is cut into K batches
      of consecutive samples (``choose_blocks``: the same K for all, up to 30, each spanning
      at least 15 changes of the stack so that batches are long next to the correlation
      time), batch i of one side is paired with batch i of the other, and the noise of the
      differences is estimated from successive differences, with t degrees of freedom from
      the batches where the function has noise.  Why paired and why successive differences:
      a program's phases (start-up, then work) are common to both runs and cancel in the
      pairs, and a change that lives in one phase adds one step to the successive
      differences, where a variance around the mean would count the change itself as noise
      and hide it.
    * with three or more recordings, the between-runs variance (``between_runs_variance``):
      the spread of the recordings' shares around their side's mean, which measures how runs
      differ (other data, other timing) where one run's batches cannot.

    When the binomial variance is the largest the p-value comes from the normal
    distribution, else from Student's t.  ``design_effect`` reports the variance used over
    the binomial variance.  Caveats: batches are aligned by their place in each recording
    (the i-th K-th of its samples), which suits recordings of a whole job or of a steady
    service; a change made of one burst shorter than a couple of batches is one event and is
    not flagged from one recording a side (record several); behaviour correlated over more
    than a batch that differs between the two runs at random is taken for a change unless
    several recordings a side measure it.  bench/bench_diff_power.py measures the false
    alarms and the power on simulated programs (docs/benchmarks.md).

    Many functions are tested at once, so the p-values are adjusted with Holm's step-down
    method, which bounds the chance of *any* false "significant" in the table by ``alpha``
    (family-wise error).  We chose the family-wise bound over a false-discovery rate because the
    main use is a CI gate, where one false alarm fails a build.  Self and total shares are two
    separate families.  Functions seen in fewer than ``MIN_TESTED_SAMPLES`` samples in the two
    recordings together are not tested (p = 1, outside the family): the combined count does
    not depend on which recording the samples came from under H0, so filtering on it keeps the
    error bound ("independent filtering") while sparing the real tests a correction for dozens
    of start-up frames seen once.

The CLI's ``--fail-if 'PATTERN:+5%'`` gate (``check_gates``) fails when a function matching
PATTERN has a total share that grew by more than 5 percentage points *and* the growth is
significant after the adjustment.
"""

import fnmatch
import math
import re
from typing import List, Sequence, TextIO, Tuple, Union

import numpy as np
import pandas as pd

from spyanalyze.errors import EmptyResult
from spyanalyze.recording import Recording
from spyanalyze.tables import check_weight, thread_keys

#: Batches of consecutive samples for the paired-batch variance: at most BLOCKS, at least
#: MIN_BLOCKS, each with MIN_BLOCK_SAMPLES samples and SPELLS_PER_BLOCK changes of stack.
BLOCKS = 30
MIN_BLOCKS = 5
MIN_BLOCK_SAMPLES = 10
SPELLS_PER_BLOCK = 15

#: A function seen in fewer samples than this, both recordings together, is not tested (its
#: p-value is 1 and it is left out of the Holm family): it could not reach significance
#: anyway, and testing it would only make the correction stricter for the others.
MIN_TESTED_SAMPLES = 20

_KEYS = {"function": ["module", "qualname"], "line": ["module", "qualname", "line"], "file": ["module"]}

#: One side of a comparison: a recording, or several of the same program.
Side = Union[Recording, Sequence[Recording]]


def reconcile_modules(modules_a, modules_b):
    """Pair module paths that differ only by leading directories; returns two rename maps.

    A path of one recording that the other lacks is renamed to the other's shorter spelling
    when exactly one unmatched path of the other recording is a trailing-component match.
    """
    set_a, set_b = set(modules_a), set(modules_b)
    only_a, only_b = sorted(set_a - set_b), sorted(set_b - set_a)
    rename_a, rename_b = {}, {}
    for module in only_a:
        if module.startswith("<"):
            continue
        candidates = [other for other in only_b
                      if other.endswith("/" + module) or module.endswith("/" + other)]
        if len(candidates) != 1:
            continue
        other = candidates[0]
        if len(other) > len(module):
            rename_b[other] = module
        else:
            rename_a[module] = other
        only_b.remove(other)
    return rename_a, rename_b


def _as_list(side):
    """A recording or an iterable of recordings, as a list."""
    return [side] if isinstance(side, Recording) else list(side)


def side_renames(sides):
    """``reconcile_modules`` over the module paths of each side's recordings together."""
    return reconcile_modules(*[set().union(*(r.frames["module"].unique() for r in side)) for side in sides])


def _key_codes(sides, by):
    """Per recording, a code per frame for ``by``, shared by every recording of both sides
    (paths reconciled between the sides), and the keys table the codes index."""
    columns = _KEYS[by]
    renames = side_renames(sides)
    parts = []
    for side, rename in zip(sides, renames):
        for recording in side:
            part = recording.frames[columns].copy()
            part["module"] = part["module"].map(lambda m: rename.get(m, m))
            parts.append(part)
    codes, uniques = pd.MultiIndex.from_frame(pd.concat(parts, ignore_index=True)).factorize()
    codes = codes.astype(np.int64)
    bounds = np.cumsum([0] + [len(part) for part in parts])
    per_recording = [codes[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
    return per_recording, uniques.to_frame(index=False, name=columns)


class _Weights:
    """One recording's weight per key, overall and in each of ``batches`` stretches of consecutive
    samples (equal sample counts, in time order): ``self``/``total`` are (batches, keys)."""

    def __init__(self, recording, codes, n_keys, weight, batches):
        stacks = recording.stack_table
        has_leaf = stacks.leaf >= 0
        leaf_pairs = (np.flatnonzero(has_leaf), codes[stacks.leaf[has_leaf]])
        stack, frame, _depth = stacks.long
        pairs = np.unique(stack * max(n_keys, 1) + codes[frame])
        total_pairs = (pairs // max(n_keys, 1), pairs % max(n_keys, 1))
        samples = recording.samples
        stack_ids = samples["stack"].to_numpy()
        w = samples["ticks" if weight == "samples" else weight].to_numpy().astype(np.float64)
        batches = max(batches, 1)
        batch = (np.arange(len(samples)) * batches) // len(samples)
        cells = np.bincount(batch * len(stacks) + stack_ids, weights=w,
                            minlength=batches * len(stacks)).reshape(batches, len(stacks))
        counts = np.bincount(stack_ids, minlength=len(stacks)).astype(np.float64)[None, :]
        self.self = _spread(cells, leaf_pairs, n_keys)
        self.total = _spread(cells, total_pairs, n_keys)
        self.self_count = _spread(counts, leaf_pairs, n_keys)[0]
        self.total_count = _spread(counts, total_pairs, n_keys)[0]
        self.batch_weight = cells.sum(axis=1)
        self.weight = float(w.sum())
        self.squares = float(np.dot(w, w))
        self.samples = len(samples)

    def shares(self, name):
        """The share of each key in each batch (0 in a batch that weighs nothing)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            shares = getattr(self, name) / self.batch_weight[:, None]
        return np.nan_to_num(shares, nan=0.0, posinf=0.0)


def _spread(cells, pairs, n_keys):
    """Sum the per-stack columns of ``cells`` (rows x stacks) into keys through (stack, key)
    pairs; returns rows x keys."""
    stack, key = pairs
    rows = cells.shape[0]
    flat = (np.arange(rows)[:, None] * n_keys + key[None, :]).ravel()
    return np.bincount(flat, weights=cells[:, stack].ravel(),
                       minlength=rows * n_keys).reshape(rows, n_keys)


def choose_blocks(recording, codes, most=BLOCKS):
    """How many batches to cut a recording into for the paired-batch variance (0: too short).

    A batch must be long next to the program's correlation time, or neighbouring batches look
    alike and the variance comes out too small.  The correlation time is estimated as the mean
    length of a *spell*: consecutive samples of one thread whose stacks hold the same functions
    (or lines, or files: the coding being compared) in the same order.  Batches are at least
    ``SPELLS_PER_BLOCK`` spells long, hold ``MIN_BLOCK_SAMPLES`` samples, and number between
    ``MIN_BLOCKS`` and ``most``.
    """
    samples = recording.samples
    n = len(samples)
    if not most or n < MIN_BLOCKS * MIN_BLOCK_SAMPLES:
        return 0
    coded = coded_stacks(recording.stack_table, codes)[samples["stack"].to_numpy()]
    thread, _names = pd.factorize(thread_keys(samples))
    order = np.argsort(thread, kind="stable")
    thread, coded = thread[order], coded[order]
    spells = 1 + int(np.count_nonzero((thread[1:] != thread[:-1]) | (coded[1:] != coded[:-1])))
    batches = min(most, n // MIN_BLOCK_SAMPLES, spells // SPELLS_PER_BLOCK)
    return max(batches, MIN_BLOCKS)


def coded_stacks(stacks, codes):
    """An id per stack such that two stacks share it when their frames have the same codes in
    the same order (a 64-bit polynomial hash of the code sequence, computed without a loop)."""
    stack, frame, depth = stacks.long
    hashes = np.zeros(len(stacks), dtype=np.uint64)
    if len(frame):
        terms = (codes[frame].astype(np.uint64) + np.uint64(1)) * np.power(
            np.uint64(0x100000001B3), depth.astype(np.uint64))   # wraps modulo 2**64, as meant
        starts = np.cumsum(stacks.lengths) - stacks.lengths
        nonempty = stacks.lengths > 0
        hashes[nonempty] = np.add.reduceat(terms, starts[nonempty])
    hashes ^= stacks.lengths.astype(np.uint64) << np.uint64(56)
    return pd.factorize(hashes)[0]


def _holm(p):
    """Holm's step-down adjusted p-values (family-wise error), vectorised."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    result = np.empty(m)
    result[order] = adjusted
    return result


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 3e-15:
            break
    return h


def _betainc(a, b, x):
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def two_sided_p(t, df):
    """Two-sided p-value of a t statistic with ``df`` degrees of freedom (inf: normal)."""
    t = abs(float(t))
    if math.isinf(df) or df > 1e7:
        return math.erfc(t / math.sqrt(2))
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


_two_sided_p = np.frompyfunc(two_sided_p, 2, 1)


def paired_variance(batch_shares_a, batch_shares_b):
    """Variance and degrees of freedom of the change in share, from time-aligned batches.

    Batch i of the first side is paired with batch i of the second (each side's batch shares
    averaged over its recordings), so behaviour the two programs share over time (start-up,
    then work) cancels in the differences d_i.  Their noise is estimated from successive
    differences, sum (d_i+1 - d_i)^2 / 2(K-1), which a change confined to one phase inflates
    by one step only, where the deviation from the mean d that a plain variance would use
    counts that change itself as noise.  Arrays are recordings x batches x keys.
    """
    profile_a, profile_b = batch_shares_a.mean(axis=0), batch_shares_b.mean(axis=0)
    d = profile_b - profile_a
    batches = d.shape[0]
    steps = (np.diff(d, axis=0) ** 2).sum(axis=0)
    variance = steps / (2 * (batches - 1)) / batches
    # For K independent normal batches the successive-difference sum spreads like a chi-square
    # with 2(K-1)^2 / (3K-4) degrees of freedom (Satterthwaite).  A function busy in a few
    # batches only (one phase) has its noise there, which leaves fewer: K is replaced by the
    # effective number of batches, with each batch's noise taken to have the binomial shape
    # p (1 - p) of its share under H0, the two sides' shares pooled (as the binomial variance
    # pools them).  Each side's own p (1 - p) would see no noise where a function fills every
    # sample of one side and none of the other, and leave a function that went from 95% to 0
    # one degree of freedom and no significance.
    m, n = len(batch_shares_a), len(batch_shares_b)
    pooled = (profile_a * m + profile_b * n) / (m + n)
    noise = pooled * (1 - pooled) * (1.0 / m + 1.0 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        effective = noise.sum(axis=0) ** 2 / (noise ** 2).sum(axis=0)
    effective = np.clip(np.nan_to_num(effective, nan=batches), 2.0, batches)
    df = 2.0 * (effective - 1) ** 2 / (3 * effective - 4)
    return variance, df


def between_runs_variance(run_shares_a, run_shares_b):
    """Variance and degrees of freedom of the change from how the recordings' shares spread
    around their side's mean (pooled over both sides); None with fewer than 3 recordings.

    This measures run-to-run variation (a run whose data or timing differ) that no split of
    one run into batches can see.  Arrays are recordings x keys.
    """
    m, n = len(run_shares_a), len(run_shares_b)
    if m + n < 3:
        return None
    df = m + n - 2
    squares = (((run_shares_a - run_shares_a.mean(axis=0)) ** 2).sum(axis=0)
               + ((run_shares_b - run_shares_b.mean(axis=0)) ** 2).sum(axis=0))
    return squares / df * (1.0 / m + 1.0 / n), np.full(run_shares_a.shape[1], float(df))


def _test(share_a, share_b, n_a, n_b, variance, df):
    """Statistic, two-sided p and design effect of the change in share (module docstring).

    ``variance`` and ``df`` come from the recordings' batches (NaN when they were too short
    to cut); the test uses the larger of that variance and the binomial one, with Student's t
    on ``df`` for the former and the normal distribution for the latter.
    """
    pooled = (share_a * n_a + share_b * n_b) / (n_a + n_b)
    binomial = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    use_batch = ~np.isnan(variance) & (variance > binomial)
    variance = np.where(use_batch, variance, binomial)
    change = share_b - share_a
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(variance > 0, change / np.sqrt(variance), 0.0)
        design = np.where(binomial > 0, variance / binomial, 1.0)
    df = np.where(use_batch & np.isfinite(df), df, np.inf)
    p = _two_sided_p(z, df).astype(np.float64)
    return z, p, design


def batch_variance(side_weights, name):
    """The larger of the paired-batch and the between-runs variance of the change in the
    ``name`` (self or total) share, with its degrees of freedom.  Taking the larger keeps the
    test honest when runs differ more than one run's batches suggest."""
    batch_shares = [np.stack([w.shares(name) for w in side]) for side in side_weights]
    variance, df = paired_variance(*batch_shares)
    between = between_runs_variance(*[np.stack([getattr(w, name).sum(axis=0) / w.weight for w in side])
                                       for side in side_weights])
    if between is not None:
        larger = between[0] > variance
        variance, df = np.where(larger, between[0], variance), np.where(larger, between[1], df)
    return variance, df


def _checked_sides(a, b):
    """The two sides as lists of recordings, each with samples to compare."""
    sides = (_as_list(a), _as_list(b))
    for name, side in zip(("first", "second"), sides):
        if not side:
            raise EmptyResult("the %s side of the comparison has no recording" % name)
        for recording in side:
            if recording.empty:
                raise EmptyResult("the %s recording (%s) holds no samples to compare"
                                  % (name, recording.source or "in memory"))
    return sides


def _add_test(result, name, side_weights, batches, n_a, n_b, present, alpha):
    """The test of the ``name`` (self or total) shares' change: its columns in ``result``."""
    if batches:
        variance, df = batch_variance(side_weights, name)
    else:
        variance, df = np.full(len(result), np.nan), np.full(len(result), np.inf)
    z, p, design = _test(result[name + "_a"].to_numpy(), result[name + "_b"].to_numpy(),
                         n_a, n_b, variance, df)
    counts = sum(np.sum([getattr(w, name + "_count") for w in side], axis=0)
                 for side in side_weights)
    tested = counts >= MIN_TESTED_SAMPLES
    p = np.where(tested, p, 1.0)
    adjusted = np.ones(len(p))
    adjusted[tested & present] = _holm(p[tested & present])
    result[name + "_z"] = z
    result[name + "_p"] = p
    result[name + "_p_adj"] = adjusted
    result[name + "_significant"] = result[name + "_p_adj"] < alpha
    result[name + "_design_effect"] = design


def diff(a: Side, b: Side, by: str = "function", weight: str = "samples", alpha: float = 0.05,
         blocks: int = BLOCKS) -> pd.DataFrame:
    """Compare ``a`` (before) with ``b`` (after); one row per function (or line/file).

    Each side is a recording or a list of recordings of the same program; a side's share is
    the mean of its recordings' shares, so a long run does not outvote the others, and with
    several recordings the run-to-run variation enters the test.

    Columns: the key (``module``, ``qualname``[, ``line``]); ``self_a``, ``self_b``,
    ``self_change``, ``total_a``, ``total_b``, ``total_change`` (shares, 0..1, by ``weight``);
    ``count_a``, ``count_b`` (samples holding the key in each side; for time weights also
    ``seconds_a``, ``seconds_b``); then for ``total`` and ``self``: ``_z`` (the standardised
    change, z or t), ``_p``, ``_p_adj`` (Holm), ``_significant`` (``_p_adj < alpha``) and
    ``_design_effect``.  Sorted by the size of the total change.  ``table.attrs`` records the
    sizes, alpha and the method.
    """
    check_weight(weight)
    if by not in _KEYS:
        raise ValueError("unknown grouping %r (choose function, line or file)" % (by,))
    sides = _checked_sides(a, b)
    codes, keys = _key_codes(sides, by)
    everything = sides[0] + sides[1]
    batches = min(choose_blocks(r, c, blocks) for r, c in zip(everything, codes))
    weights = [_Weights(r, c, len(keys), weight, batches) for r, c in zip(everything, codes)]
    side_weights = (weights[:len(sides[0])], weights[len(sides[0]):])

    def side_sum(side, attribute):
        return np.sum([getattr(w, attribute) for w in side], axis=0)

    def side_share(side, name):
        return np.mean([getattr(w, name).sum(axis=0) / w.weight for w in side], axis=0)

    present = (side_sum(side_weights[0], "total_count") + side_sum(side_weights[1], "total_count")) > 0
    scale = 1.0 if weight == "samples" else 1e-9
    result = keys.copy()
    for name in ("self", "total"):
        result[name + "_a"] = side_share(side_weights[0], name)
        result[name + "_b"] = side_share(side_weights[1], name)
        result[name + "_change"] = result[name + "_b"] - result[name + "_a"]
    for suffix, side in zip("ab", side_weights):
        result["count_" + suffix] = side_sum(side, "total_count").astype(np.int64)
    if weight != "samples":
        for suffix, side in zip("ab", side_weights):
            result["seconds_" + suffix] = side_sum(side, "total").sum(axis=0) * scale
    weight_a, weight_b = (sum(w.weight for w in side) for side in side_weights)
    n_a, n_b = (sum(w.weight for w in side) ** 2 / sum(w.squares for w in side) for side in side_weights)
    for name in ("total", "self"):
        _add_test(result, name, side_weights, batches, n_a, n_b, present, alpha)
    result = result[present]
    order = np.lexsort((-result["self_change"].abs().to_numpy(), -result["total_change"].abs().to_numpy()))
    result = result.iloc[order].reset_index(drop=True)
    recordings_a, recordings_b = len(sides[0]), len(sides[1])
    result.attrs.update({"by": by, "weight": weight, "alpha": alpha, "batches": batches,
                         "recordings_a": recordings_a, "recordings_b": recordings_b,
                         "n_a": n_a, "n_b": n_b, "weight_a": weight_a * scale, "weight_b": weight_b * scale,
                         "method": "two-sided test on shares; variance = max(pooled binomial, paired "
                                   "time-aligned batches over %d batches%s, t); Holm-adjusted"
                                   % (batches, ", between runs of %d+%d recordings"
                                      % (recordings_a, recordings_b)
                                      if recordings_a + recordings_b >= 3 else "")})
    return result


# ------------------------------------------------------------------------------------------
# CI gates

_GATE = re.compile(r"^(?P<pattern>.+):(?P<sign>[+-])(?P<amount>\d+(?:\.\d+)?)%$")


class Gate:
    """``PATTERN:+N%``: fail when a matching function's share grows by more than N percentage
    points and the growth is significant.  ``PATTERN:-N%`` fails on a significant drop."""

    def __init__(self, text: str):
        match = _GATE.match(text.strip())
        if not match:
            raise ValueError("bad gate %r: write PATTERN:+N%% (e.g. 'myapp.*:+5%%')" % text)
        self.text = text
        self.pattern = match.group("pattern")
        self.threshold = float(match.group("amount")) / 100 * (1 if match.group("sign") == "+" else -1)
        self._regex = re.compile(fnmatch.translate(self.pattern))

    def matches(self, module: str, qualname: str) -> bool:
        name = qualname.rsplit(".", 1)[-1]
        return any(self._regex.match(text) for text in (qualname, name, module + ":" + qualname, module))

    def violations(self, table: pd.DataFrame, share: str = "total") -> pd.DataFrame:
        """Rows of a ``diff`` table that break this gate."""
        hit = np.fromiter((self.matches(m, q) for m, q in zip(table["module"], table["qualname"])),
                          dtype=bool, count=len(table))
        change = table[share + "_change"]
        grew = change > self.threshold if self.threshold >= 0 else change < self.threshold
        return table[hit & grew.to_numpy() & table[share + "_significant"].to_numpy()]


def check_gates(table: pd.DataFrame, gates: Sequence[Union[str, "Gate"]],
                share: str = "total") -> List[Tuple["Gate", pd.DataFrame]]:
    """All (gate, violating rows) pairs for gate strings or ``Gate`` objects; empty when all pass."""
    failures = []
    for gate in gates:
        gate = gate if isinstance(gate, Gate) else Gate(gate)
        rows = gate.violations(table, share)
        if len(rows):
            failures.append((gate, rows))
    return failures


# ------------------------------------------------------------------------------------------
# Differential collapsed stacks


def write_collapsed_diff(a: Side, b: Side, out: TextIO, weight: str = "samples",
                         normalize: bool = True) -> int:
    """Write ``stack count_a count_b`` lines (root first), as difffolded.pl makes and
    flamegraph.pl reads for a differential flame graph.  ``a`` and ``b`` are recordings or
    lists of recordings (a side's counts are summed).  Frames are ``qualname (module)``
    without line numbers, so two checkouts line up.  With ``normalize`` the first side's
    counts are scaled to the second's total (difffolded.pl ``-n``), so recordings of different
    lengths compare.  Time weights are written in microseconds."""
    from spyanalyze.export.collapsed import UNIT_NS, stack_weights_by_text

    sides = (_as_list(a), _as_list(b))
    renames = side_renames(sides)
    counts = [pd.concat([stack_weights_by_text(r, weight, lines=False, rename=rename) for r in side])
              .groupby(level=0).sum() for side, rename in zip(sides, renames)]
    table = pd.concat([counts[0].rename("a"), counts[1].rename("b")], axis=1).fillna(0.0)
    if weight != "samples":
        table = table / UNIT_NS
    if normalize and table["a"].sum() > 0:
        table["a"] = table["a"] * (table["b"].sum() / table["a"].sum())
    table = table.round().astype(np.int64)
    table = table[(table["a"] > 0) | (table["b"] > 0)].sort_index()
    out.writelines("%s %d %d\n" % (text, x, y) for text, x, y in zip(table.index, table["a"], table["b"]))
    return len(table)
