"""Compare two recordings: per function (or line, or file), the share of each recording's
samples, the change, and whether the change is larger than sampling noise.

Matching
    Functions are matched by (module-relative path, qualified name), never by absolute path or
    line, so recordings from another machine, virtualenv or commit line up (see
    ``recording.module_paths`` for how paths are made relative).  When the two recordings chose
    different roots for user code (``app/db.py`` in one, ``db.py`` in the other), a path left
    unmatched is paired with the unmatched path of the other recording that it ends with, when
    exactly one does.  Per-line diffs also match on the line number, so they are only meaningful
    between recordings of the same source.

The test
    For each function f, recording r has weight w_r(f) out of W_r (samples by default, or wall
    or CPU time) and share p_r = w_r(f) / W_r.  The change d = p_b - p_a is tested against
    H0 "both recordings have the same share" with the two-sided statistic d / se, where se^2 is
    the larger of two variance estimates:

    * the two-proportion (binomial) variance under H0, with the pooled share
      p0 = (p_a n_a + p_b n_b) / (n_a + n_b) and se^2 = p0 (1 - p0) (1/n_a + 1/n_b); for time
      weights n_r is Kish's effective sample size (sum w)^2 / sum w^2, for sample counts the
      number of samples.  This is the textbook two-proportion z-test, and it assumes that
      samples are independent.  They are not:
    * samples of a running program are autocorrelated (a function that runs for 50 ms is in
      50 consecutive samples at 1 kHz), so the binomial variance understates the noise, by a
      factor of 10 to 40 in our tests, and flags changes that are not there.  The batch-means
      variance does not assume independence: each recording is cut into R runs of consecutive
      samples (``choose_blocks``: up to 20, at least 5, each spanning at least 20 changes of
      the stack, so that runs are long next to the correlation time), and the share's
      variance is estimated from how much it varies between runs, in the ratio-estimator form
      var(p_r) = R/(R-1) * sum_k (w_k - p_r W_k)^2 / W_r^2  (w_k, W_k: the function's and all
      weight in run k).  The two recordings' variances add; with a fixed number of runs the
      statistic follows Student's t, with Welch-Satterthwaite degrees of freedom.

    When the binomial variance is the larger, the p-value comes from the normal distribution;
    taking the larger never makes the test less conservative than the textbook one.
    ``design_effect`` reports the variance used over the binomial variance (how many correlated
    samples are worth one independent sample).  Caveats: batch means assumes the program's
    behaviour is stationary over the recording and correlated over less than a run; a program
    whose behaviour drifts gets a large variance (its share depends on when you look), and one
    correlated over more than a run gets too small a variance.  In simulations of
    autocorrelated recordings with no real change (the Markov-chain recordings of
    tests/test_analyze_diff.py, 300 to 20,000 samples, stacks held for 2 to 20 samples, 100
    pairs per setting), this test flagged some function in 3-8% of pairs at alpha 0.05; the
    binomial test alone did in 41-98%.

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

import numpy as np
import pandas as pd

from spyanalyze.errors import EmptyResult
from spyanalyze.recording import check_weight

#: Runs of consecutive samples for the batch-means variance: at most BLOCKS, at least
#: MIN_BLOCKS, each with MIN_BLOCK_SAMPLES samples and SPELLS_PER_BLOCK changes of stack.
BLOCKS = 20
MIN_BLOCKS = 5
MIN_BLOCK_SAMPLES = 10
SPELLS_PER_BLOCK = 20

#: A function seen in fewer samples than this, both recordings together, is not tested (its
#: p-value is 1 and it is left out of the Holm family): it could not reach significance
#: anyway, and testing it would only make the correction stricter for the others.
MIN_TESTED_SAMPLES = 20

_KEYS = {"function": ["module", "qualname"], "line": ["module", "qualname", "line"], "file": ["module"]}


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


def _shares(recording, by, weight, rename, blocks):
    """Per key: self and total weight, and their batch-means variances (None when too short)."""
    frames = recording.frames
    columns = _KEYS[by]
    key_frame = frames[columns].copy()
    key_frame["module"] = key_frame["module"].map(lambda m: rename.get(m, m))
    codes, uniques = pd.MultiIndex.from_frame(key_frame).factorize()
    keys = uniques.to_frame(index=False, name=columns)
    codes = codes.astype(np.int64)
    n_keys = len(keys)
    stacks = recording.stack_table
    leaf = stacks.leaf
    has_leaf = leaf >= 0
    leaf_codes = codes[leaf[has_leaf]]
    stack, frame, _depth = stacks.long
    pairs = np.unique(stack * max(n_keys, 1) + codes[frame])
    pair_stack, pair_code = pairs // max(n_keys, 1), pairs % max(n_keys, 1)

    samples = recording.samples
    stack_ids = samples["stack"].to_numpy()
    column = "ticks" if weight == "samples" else weight
    w = samples[column].to_numpy().astype(np.float64)
    per_stack = np.bincount(stack_ids, weights=w, minlength=len(stacks))
    total_weight = float(per_stack.sum())
    n_eff = total_weight ** 2 / float(np.dot(w, w)) if len(w) and total_weight > 0 else 0.0

    def spread(weights_per_stack):
        self_w = np.bincount(leaf_codes, weights=weights_per_stack[has_leaf], minlength=n_keys)
        total_w = np.bincount(pair_code, weights=weights_per_stack[pair_stack], minlength=n_keys)
        return self_w, total_w

    table = keys
    table["self"], table["total"] = spread(per_stack)
    counts = np.bincount(stack_ids, minlength=len(stacks)).astype(np.float64)
    table["self_count"], table["total_count"] = spread(counts)
    table["self_var"] = np.nan
    table["total_var"] = np.nan
    runs = choose_blocks(recording, codes, blocks)
    if runs and total_weight > 0:
        block = (np.arange(len(samples)) * runs) // len(samples)      # time order, equal counts
        cells = np.bincount(block * len(stacks) + stack_ids, weights=w,
                            minlength=runs * len(stacks)).reshape(runs, len(stacks))
        block_totals = cells.sum(axis=1)
        shares = {name: table[name].to_numpy() / total_weight for name in ("self", "total")}
        accumulated = {"self": np.zeros(n_keys), "total": np.zeros(n_keys)}
        for k in range(runs):
            parts = dict(zip(("self", "total"), spread(cells[k])))
            for name in ("self", "total"):
                accumulated[name] += (parts[name] - shares[name] * block_totals[k]) ** 2
        for name in ("self", "total"):
            table[name + "_var"] = runs / (runs - 1) * accumulated[name] / total_weight ** 2
    return table, total_weight, n_eff, runs


def choose_blocks(recording, codes, most=BLOCKS):
    """How many runs to cut a recording into for the batch-means variance (0: too short).

    A run must be long next to the program's correlation time, or the runs look alike and the
    variance comes out too small.  The correlation time is estimated as the mean length of a
    *spell*: consecutive samples of one thread whose stacks hold the same functions (or lines,
    or files: the coding being compared) in the same order.  Runs are made at least
    ``SPELLS_PER_BLOCK`` spells long, hold ``MIN_BLOCK_SAMPLES`` samples, and number between
    ``MIN_BLOCKS`` and ``most``.
    """
    samples = recording.samples
    n = len(samples)
    if not most or n < MIN_BLOCKS * MIN_BLOCK_SAMPLES:
        return 0
    coded = coded_stacks(recording.stack_table, codes)[samples["stack"].to_numpy()]
    thread, _names = pd.factorize(samples["pid"].to_numpy() << 32 | samples["tid"].to_numpy())
    order = np.argsort(thread, kind="stable")
    thread, coded = thread[order], coded[order]
    spells = 1 + int(np.count_nonzero((thread[1:] != thread[:-1]) | (coded[1:] != coded[:-1])))
    runs = min(most, n // MIN_BLOCK_SAMPLES, spells // SPELLS_PER_BLOCK)
    return max(runs, MIN_BLOCKS)


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


def _test(share_a, share_b, n_a, n_b, var_a, var_b, runs_a, runs_b):
    """Statistic, two-sided p and design effect of the change in share (module docstring).

    When the batch-means variance is used, the statistic has Student's t distribution with
    Welch-Satterthwaite degrees of freedom from the two recordings' runs - 1 (batch means with a
    fixed number of batches is t, not normal); when the binomial variance is used, it is normal.
    """
    pooled = (share_a * n_a + share_b * n_b) / (n_a + n_b)
    binomial = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    batch = var_a + var_b
    use_batch = ~np.isnan(batch) & (batch > binomial)
    variance = np.where(use_batch, batch, binomial)
    change = share_b - share_a
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(variance > 0, change / np.sqrt(variance), 0.0)
        design = np.where(binomial > 0, variance / binomial, 1.0)
        df = batch ** 2 / (var_a ** 2 / max(runs_a - 1, 1) + var_b ** 2 / max(runs_b - 1, 1))
    df = np.where(use_batch & np.isfinite(df), df, np.inf)
    p = _two_sided_p(z, df).astype(np.float64)
    return z, p, design


def diff(a, b, by="function", weight="samples", alpha=0.05, blocks=BLOCKS):
    """Compare recording ``a`` (before) with ``b`` (after); one row per function (or line/file).

    Columns: the key (``module``, ``qualname``[, ``line``]); ``self_a``, ``self_b``,
    ``self_change``, ``total_a``, ``total_b``, ``total_change`` (shares, 0..1, by ``weight``);
    ``count_a``, ``count_b`` (samples holding the key in each; for time weights also
    ``seconds_a``, ``seconds_b``); then for ``total`` and ``self``: ``_z`` (the standardised change, z or t), ``_p``, ``_p_adj``
    (Holm), ``_significant`` (``_p_adj < alpha``) and ``_design_effect``.  Sorted by the size
    of the total change.  ``table.attrs`` records the sizes, alpha and the method.
    """
    check_weight(weight)
    if by not in _KEYS:
        raise ValueError("unknown grouping %r (choose function, line or file)" % (by,))
    for name, recording in (("first", a), ("second", b)):
        if recording.empty:
            raise EmptyResult("the %s recording (%s) holds no samples to compare"
                              % (name, recording.source or "in memory"))
    rename_a, rename_b = reconcile_modules(a.frames["module"].unique(), b.frames["module"].unique())
    table_a, weight_a, n_a, runs_a = _shares(a, by, weight, rename_a, blocks)
    table_b, weight_b, n_b, runs_b = _shares(b, by, weight, rename_b, blocks)
    batch_a, batch_b = table_a["total_var"].notna().any(), table_b["total_var"].notna().any()
    keys = _KEYS[by]
    table = table_a.merge(table_b, on=keys, how="outer", suffixes=("_a", "_b"))
    table = table[(table["total_a"].fillna(0) > 0) | (table["total_b"].fillna(0) > 0)]
    for column in ("self_a", "self_b", "total_a", "total_b"):
        table[column] = table[column].fillna(0.0)
    scale = 1.0 if weight == "samples" else 1e-9
    result = table[keys].copy()
    result["self_a"] = table["self_a"] / weight_a
    result["self_b"] = table["self_b"] / weight_b
    result["self_change"] = result["self_b"] - result["self_a"]
    result["total_a"] = table["total_a"] / weight_a
    result["total_b"] = table["total_b"] / weight_b
    result["total_change"] = result["total_b"] - result["total_a"]
    result["count_a"] = table["total_count_a"].fillna(0).astype(np.int64)
    result["count_b"] = table["total_count_b"].fillna(0).astype(np.int64)
    if weight != "samples":
        result["seconds_a"] = table["total_a"] * scale
        result["seconds_b"] = table["total_b"] * scale
    for name in ("total", "self"):
        # a key one recording lacks had no samples there: its run-to-run variance is 0 (when
        # that recording was long enough for runs at all; NaN keeps the binomial-only test)
        var_a = table[name + "_var_a"].fillna(0.0 if batch_a else np.nan).to_numpy(dtype=np.float64)
        var_b = table[name + "_var_b"].fillna(0.0 if batch_b else np.nan).to_numpy(dtype=np.float64)
        z, p, design = _test(result[name + "_a"].to_numpy(), result[name + "_b"].to_numpy(),
                             n_a, n_b, var_a, var_b, runs_a, runs_b)
        tested = (table[name + "_count_a"].fillna(0) + table[name + "_count_b"].fillna(0)
                  >= MIN_TESTED_SAMPLES).to_numpy()
        p = np.where(tested, p, 1.0)
        adjusted = np.ones(len(p))
        adjusted[tested] = _holm(p[tested])
        result[name + "_z"] = z
        result[name + "_p"] = p
        result[name + "_p_adj"] = adjusted
        result[name + "_significant"] = result[name + "_p_adj"] < alpha
        result[name + "_design_effect"] = design
    order = np.lexsort((-result["self_change"].abs().to_numpy(), -result["total_change"].abs().to_numpy()))
    result = result.iloc[order].reset_index(drop=True)
    result.attrs.update({"by": by, "weight": weight, "alpha": alpha, "runs_a": runs_a, "runs_b": runs_b,
                         "n_a": n_a, "n_b": n_b, "weight_a": weight_a * scale, "weight_b": weight_b * scale,
                         "method": "two-sided test on shares; variance = max(pooled binomial, batch "
                                   "means over %d/%d runs, t with Welch df); Holm-adjusted"
                                   % (runs_a, runs_b)})
    return result


# ------------------------------------------------------------------------------------------
# CI gates

_GATE = re.compile(r"^(?P<pattern>.+):(?P<sign>[+-])(?P<amount>\d+(?:\.\d+)?)%$")


class Gate:
    """``PATTERN:+N%``: fail when a matching function's share grows by more than N percentage
    points and the growth is significant.  ``PATTERN:-N%`` fails on a significant drop."""

    def __init__(self, text):
        match = _GATE.match(text.strip())
        if not match:
            raise ValueError("bad gate %r: write PATTERN:+N%% (e.g. 'myapp.*:+5%%')" % text)
        self.text = text
        self.pattern = match.group("pattern")
        self.threshold = float(match.group("amount")) / 100 * (1 if match.group("sign") == "+" else -1)
        self._regex = re.compile(fnmatch.translate(self.pattern))

    def matches(self, module, qualname):
        name = qualname.rsplit(".", 1)[-1]
        return any(self._regex.match(text) for text in (qualname, name, module + ":" + qualname, module))

    def violations(self, table, share="total"):
        """Rows of a ``diff`` table that break this gate."""
        hit = np.fromiter((self.matches(m, q) for m, q in zip(table["module"], table["qualname"])),
                          dtype=bool, count=len(table))
        change = table[share + "_change"]
        grew = change > self.threshold if self.threshold >= 0 else change < self.threshold
        return table[hit & grew.to_numpy() & table[share + "_significant"].to_numpy()]


def check_gates(table, gates, share="total"):
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


def write_collapsed_diff(a, b, out, weight="samples", normalize=True):
    """Write ``stack count_a count_b`` lines (root first), as difffolded.pl makes and
    flamegraph.pl reads for a differential flame graph.  Frames are ``qualname (module)``
    without line numbers, so two checkouts line up.  With ``normalize`` the first recording's
    counts are scaled to the second's total (difffolded.pl ``-n``), so recordings of different
    lengths compare.  Time weights are written in microseconds."""
    from spyanalyze.export.collapsed import UNIT_NS, stack_weights_by_text

    rename_a, rename_b = reconcile_modules(a.frames["module"].unique(), b.frames["module"].unique())
    counts_a = stack_weights_by_text(a, weight, lines=False, rename=rename_a)
    counts_b = stack_weights_by_text(b, weight, lines=False, rename=rename_b)
    table = pd.concat([counts_a.rename("a"), counts_b.rename("b")], axis=1).fillna(0.0)
    if weight != "samples":
        table = table / UNIT_NS
    if normalize and table["a"].sum() > 0:
        table["a"] = table["a"] * (table["b"].sum() / table["a"].sum())
    table = table.round().astype(np.int64)
    table = table[(table["a"] > 0) | (table["b"] > 0)].sort_index()
    out.writelines("%s %d %d\n" % (text, x, y) for text, x, y in zip(table.index, table["a"], table["b"]))
    return len(table)
