"""Derived views of a Recording: by function, line, file and thread, and a resampled timeline.

Every per-code view works the same way, and never loops over samples:

1. weigh each distinct stack once (``np.bincount`` of the samples' stack ids: counts, wall ns,
   CPU ns);
2. *self* weight: give each stack's weight to the code of its innermost frame;
3. *total* (inclusive) weight: give it to every distinct code in the stack, once, so recursion
   does not count a sample twice (distinct (stack, code) pairs are cached per coding).

Shares are fractions of the whole recording's weight (``self_share`` = self / total weight of
every sample, including samples whose stack a filter emptied).  Times are in nanoseconds, as in every table
of the analyser (see ``spyanalyze.recording``).
"""

from typing import Any, Dict, List

import numpy as np
import pandas as pd

from spyformat import TASK_FILE

from spyanalyze.errors import TooLarge
from spyanalyze.frames import label
from spyanalyze.tables import WEIGHTS, check_weight, thread_keys

#: A ``spyanalyze.recording.Recording``, which imports this module: importing it here, even for
#: the type checker alone, would close an import cycle (tests/test_imports.py).
Recording = Any

#: A timeline has at most this many buckets (a row each): a finer frequency over a long span is
#: refused before anything of that size is allocated.
MAX_TIMELINE_BUCKETS = 10_000_000

def aggregate(recording: Recording, by: str = "function", weight: str = "samples") -> pd.DataFrame:
    """Self and total weight per code (``function``, ``line``, ``file`` or ``frame``).

    Columns: the key columns, ``self_samples``, ``total_samples``, ``self_wall``,
    ``total_wall``, ``self_cpu``, ``total_cpu`` (nanoseconds), then ``self_share`` and
    ``total_share`` by ``weight``.  Sorted heaviest self first; codes never sampled are left out.

    By function, ``line`` is the lowest line sampled in the function (the format records the
    line being run, not the ``def`` line): close to where it starts, never the 0 of an
    instruction without a line unless the function has no other.
    """
    check_weight(weight)
    codes, keys = recording.frame_codes(by)
    table = keys.copy()
    n_codes = len(keys)
    stacks = recording.stack_table
    leaf = stacks.leaf
    has_leaf = leaf >= 0
    leaf_codes = codes[leaf[has_leaf]]
    pair_stack, pair_code = stacks.pairs(by, codes)
    totals, exact = {}, {}
    for name in WEIGHTS:
        per_stack = recording.stack_weights(name)
        self_w = np.bincount(leaf_codes, weights=per_stack[has_leaf], minlength=n_codes)
        total_w = np.bincount(pair_code, weights=per_stack[pair_stack], minlength=n_codes)
        table["self_" + name] = self_w.round().astype(np.int64)
        table["total_" + name] = total_w.round().astype(np.int64)
        totals[name] = per_stack.sum()
        exact[name] = (self_w, total_w)
    denominator = totals[weight] or 1.0
    # shares of the weights before rounding (a sample's ticks are fractions when rounds ran late)
    table["self_share"] = exact[weight][0] / denominator
    table["total_share"] = exact[weight][1] / denominator
    if by == "function":
        # a native function's lines may lie in several source files: it is named by its library
        native = (recording.frames["kind"] == "native").to_numpy()
        lines = np.where(native, 0, recording.frames["line"].to_numpy())
        table.insert(2, "line", lowest_lines(lines, codes, n_codes))
    # (on the exact weights: a code sampled only in rounds that ran late has less than half a
    # tick, rounded to 0 samples, and its CPU and wall time still count)
    table = table[exact["samples"][1] > 0]
    return table.sort_values(["self_share", "total_share"], ascending=False, kind="stable") \
        .reset_index(drop=True)


def lowest_lines(lines, codes, n_codes):
    """Per code, the lowest line above 0 among its frames (0 when it has none)."""
    known = np.where(lines > 0, lines, np.iinfo(np.int64).max)
    lowest = np.full(n_codes, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(lowest, codes, known)
    return np.where(lowest == np.iinfo(np.int64).max, 0, lowest)


def by_function(recording: Recording, weight: str = "samples") -> pd.DataFrame:
    """Functions (module-relative file + qualified name): self and total weight and share."""
    return aggregate(recording, "function", weight)


def by_line(recording: Recording, weight: str = "samples") -> pd.DataFrame:
    """Source lines (module, qualname, line): self and total weight and share."""
    return aggregate(recording, "line", weight)


def by_file(recording: Recording, weight: str = "samples") -> pd.DataFrame:
    """Source files (module-relative path): self and total weight and share."""
    return aggregate(recording, "file", weight)


def by_cause(recording: Recording, weight: str = "wall") -> pd.DataFrame:
    """What threads waited in: one row per (system call, kernel function) of the samples that
    found their thread asleep (``(unknown)`` when the recording does not say: format 1.0, or
    the kernel would not tell), and one ``(running)`` row for the others; their samples,
    ``weight`` and share of it, heaviest first."""
    check_weight(weight)
    samples = recording.samples
    column = "ticks" if weight == "samples" else weight
    if samples.empty:
        return pd.DataFrame(columns=["cause", "syscall", "wchan"]
                            + list(dict.fromkeys(["samples", weight])) + ["share"])
    syscall = samples["syscall"].astype(object).where(samples["syscall"].notna(), None)
    wchan = samples["wchan"].astype(object).where(samples["wchan"].notna(), None)
    idle = samples["idle"].to_numpy()
    keys = [(call, channel) if asleep else ("(running)", None)
            for call, channel, asleep in zip(syscall, wchan, idle)]
    frame = pd.DataFrame({"key": keys, "weight": samples[column].to_numpy()})
    grouped = frame.groupby("key", sort=False)
    table = pd.DataFrame({"samples": grouped.size()})
    table[weight] = grouped["weight"].sum()      # samples: in ticks, see sample_weights
    table = table.reset_index()
    table["syscall"] = [key[0] for key in table["key"]]
    table["wchan"] = [key[1] for key in table["key"]]
    table["cause"] = [_cause_label(*key) for key in table["key"]]
    total = float(table[weight].sum()) or 1.0
    table["share"] = table[weight] / total
    table = table.sort_values(weight, ascending=False, kind="stable").reset_index(drop=True)
    return table[["cause", "syscall", "wchan"] + list(dict.fromkeys(["samples", weight]))
                 + ["share"]]


def by_task(recording: Recording, weight: str = "samples") -> pd.DataFrame:
    """Time by asyncio task: one row per (task, its coroutine) the samples ran in, as the
    recorder marks them (a ``<task>`` frame just outside the task's coroutine), and one
    ``(no task)`` row for the rest (an event loop between tasks, other threads); columns
    ``task``, ``coroutine`` (the label of the coroutine's function), ``module`` and
    ``qualname`` of it, ``samples``, ``wall``, ``cpu`` (ns) and ``share`` of ``weight``,
    heaviest first.  Tasks of one name are one row per coroutine: names are not unique."""
    check_weight(weight)
    frames = recording.frames
    task_of, inside = recording.stack_table.outermost((frames["file"] == TASK_FILE).to_numpy())
    samples = recording.samples
    ids = samples["stack"].to_numpy()
    keys = pd.DataFrame({"task": task_of[ids], "inside": inside[ids]})
    for name in ("wall", "cpu"):
        keys[name] = samples[name].to_numpy()
    keys["samples"] = samples["ticks"].to_numpy()
    grouped = keys.groupby(["task", "inside"], sort=False)
    table = grouped[["samples", "wall", "cpu"]].sum().reset_index()
    table["count"] = grouped.size().to_numpy()
    names = frames["qualname"].to_numpy(dtype=object)
    modules = frames["module"].to_numpy(dtype=object)
    lines = frames["line"].to_numpy()
    task, coroutine = table["task"].to_numpy(), table["inside"].to_numpy()
    has_task, has_coroutine = task >= 0, coroutine >= 0
    table["task"] = np.where(has_task, names[np.maximum(task, 0)], "(no task)")
    table["module"] = np.where(has_coroutine, modules[np.maximum(coroutine, 0)], None)
    table["qualname"] = np.where(has_coroutine, names[np.maximum(coroutine, 0)], None)
    table["line"] = np.where(has_coroutine & (lines[np.maximum(coroutine, 0)] > 0),
                             lines[np.maximum(coroutine, 0)], np.iinfo(np.int64).max)
    table = table.groupby(["task", "module", "qualname"], dropna=False, sort=False).agg(
        count=("count", "sum"), samples=("samples", "sum"), wall=("wall", "sum"),
        cpu=("cpu", "sum"), line=("line", "min")).reset_index()
    line = table["line"].where(table["line"] < np.iinfo(np.int64).max, 0)
    table["coroutine"] = [None if module is None or module != module else label(q, module, n)
                          for q, module, n in zip(table["qualname"], table["module"], line)]
    total = float(table[weight].sum()) or 1.0
    table["share"] = table[weight] / total
    table["samples"] = table.pop("count")       # whole samples; the share is by ticks
    table = table.sort_values(["share", "task"], ascending=[False, True], kind="stable")
    return table[["task", "coroutine", "module", "qualname", "samples", "wall", "cpu", "share"]] \
        .reset_index(drop=True)


def _cause_label(call, channel):
    if call == "(running)":
        return call
    if call is None and channel is None:
        return "(unknown)"
    return "%s (%s)" % (call or "?", channel) if channel else call


def by_thread(recording: Recording) -> pd.DataFrame:
    """One row per thread: samples, wall and CPU ns, CPU use, idle and GIL shares, and the span
    (``first`` and ``last`` sample, ns since the origin, like ``t``)."""
    samples = recording.samples
    if samples.empty:
        return pd.DataFrame(columns=["pid", "tid", "thread", "samples", "wall", "cpu", "cpu_use",
                                     "idle_share", "gil_share", "first", "last"])
    grouped = samples.groupby(["pid", "tid"], sort=True, observed=True)
    table = grouped.agg(thread=("thread", "first"), samples=("stack", "size"), wall=("wall", "sum"),
                        cpu=("cpu", "sum"), idle_share=("idle", "mean"), gil_share=("gil", "mean"),
                        first=("t", "min"), last=("t", "max")).reset_index()
    table["thread"] = table["thread"].astype(object)
    table["cpu_use"] = table["cpu"] / table["wall"].where(table["wall"] > 0)
    columns = ["pid", "tid", "thread", "samples", "wall", "cpu", "cpu_use", "idle_share", "gil_share",
               "first", "last"]
    return table[columns].sort_values("samples", ascending=False, kind="stable").reset_index(drop=True)


def by_process(recording: Recording) -> pd.DataFrame:
    """One row per process the recording names (the target and, recorded with ``spyrec -C``,
    its descendants): ``pid``, ``ppid`` (None for the target), ``command``, ``python``,
    ``samples``, ``threads``, ``cpu`` (ns), ``idle_share``, its span (``first`` and ``last``
    sample, ns since the origin) and ``skipped``: why a descendant was not recorded (None
    for one that was)."""
    samples = recording.samples
    columns = ["pid", "ppid", "command", "python", "samples", "threads", "cpu", "idle_share",
               "first", "last", "skipped"]
    stats = samples.groupby("pid", sort=True).agg(
        samples=("stack", "size"), threads=("tid", "nunique"), cpu=("cpu", "sum"),
        idle_share=("idle", "mean"), first=("t", "min"), last=("t", "max"))
    processes = recording.processes.set_index("pid") if len(recording.processes) else None
    pids = sorted(set(stats.index.tolist()) | set(processes.index.tolist() if processes is not None else []))

    def field(pid, name):
        if processes is None or pid not in processes.index or name not in processes.columns:
            return None
        value = processes.at[pid, name]
        return None if value is None or (isinstance(value, float) and np.isnan(value)) else value
    rows = []
    for pid in pids:
        argv = field(pid, "argv")
        row = {"pid": int(pid), "ppid": field(pid, "ppid"),
               "command": " ".join(argv) if isinstance(argv, list) else None,
               "python": field(pid, "python_version"), "skipped": field(pid, "skipped")}
        if pid in stats.index:
            row.update(stats.loc[pid].to_dict())
        else:
            row.update(samples=0, threads=0, cpu=0, idle_share=None, first=None, last=None)
        rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    for column in ("samples", "threads", "cpu"):
        table[column] = table[column].astype(np.int64)
    table["ppid"] = pd.Series([row["ppid"] for row in rows], dtype=object)  # None: no parent
    return table


def timeline(recording: Recording, freq: str = "1s") -> pd.DataFrame:
    """CPU and memory over time, resampled to ``freq`` (a pandas offset such as ``"100ms"``).

    Indexed by the wall-clock start of each bucket (UTC).  Columns: ``samples``, ``active``
    (samples not idle), ``threads`` (distinct threads sampled), ``cpu`` (CPU seconds used in
    the bucket, ns), ``cpu_use`` (cores busy on average: cpu / bucket length) and ``rss`` (bytes:
    each process's largest RSS in the bucket, summed over processes; carried forward over
    buckets without samples).
    """
    step = int(pd.to_timedelta(freq).value)
    if step <= 0:
        raise ValueError("timeline frequency must be positive, not %r" % (freq,))
    samples = recording.samples
    origin = int(recording.header.get("start_wall_ns") or 0)
    columns = ["samples", "active", "threads", "cpu", "cpu_use", "rss"]
    if samples.empty:
        return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], tz="UTC", name="time"))
    bucket = (samples["t"].to_numpy() + origin) // step
    first = int(bucket.min())
    bucket -= first                                   # 0 .. n_buckets - 1, in time order
    n_buckets = int(bucket.max()) + 1
    if n_buckets > MAX_TIMELINE_BUCKETS:
        raise TooLarge("a timeline at %s over this recording would have %d buckets (at most %d): "
                       "use a coarser frequency" % (freq, n_buckets, MAX_TIMELINE_BUCKETS))
    thread = thread_keys(samples)
    active = np.bincount(bucket, weights=~samples["idle"].to_numpy(), minlength=n_buckets)
    table = pd.DataFrame({
        "samples": np.bincount(bucket, minlength=n_buckets),
        "active": active.astype(np.int64),
        "threads": _distinct_per_bucket(bucket, n_buckets, thread),
        "cpu": np.bincount(bucket, weights=samples["cpu"].to_numpy(), minlength=n_buckets).astype(np.int64),
    })
    table["cpu_use"] = table["cpu"] / step
    table["rss"] = _rss_per_bucket(bucket, n_buckets, samples["pid"].to_numpy(), samples["rss"].to_numpy())
    table.index = pd.DatetimeIndex(((np.arange(n_buckets) + first) * step).astype("datetime64[ns]"),
                                   name="time").tz_localize("UTC")
    return table[columns]


def _distinct_per_bucket(bucket, n_buckets, key):
    """How many distinct ``key`` values (threads) each bucket holds, without sorting samples."""
    codes, uniques = pd.factorize(key)
    cells = n_buckets * len(uniques)
    if cells <= 50_000_000:
        seen = np.zeros(cells, dtype=bool)
        seen[bucket * len(uniques) + codes] = True
        return seen.reshape(n_buckets, len(uniques)).sum(axis=1)
    pairs = np.unique(bucket * len(uniques) + codes)
    return np.bincount(pairs // len(uniques), minlength=n_buckets)


def _rss_per_bucket(bucket, n_buckets, pid, rss):
    """Each process's largest RSS per bucket, summed over processes; carried over empty buckets."""
    codes, uniques = pd.factorize(pid)
    if len(uniques) == 1:                              # samples are in time order: buckets are runs
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        per_bucket = pd.Series(np.maximum.reduceat(rss, starts), index=bucket[starts])
    else:
        per_bucket = pd.Series(rss).groupby([bucket, codes]).max().groupby(level=0).sum()
    return per_bucket.reindex(np.arange(n_buckets)).ffill().astype(np.int64).to_numpy()


def summary(recording: Recording) -> Dict[str, Any]:
    """What ``spyanalyze info`` prints, as a dict: provenance, span, rates, recorder health."""
    header, samples = recording.header, recording.samples
    interval = recording.interval_ns
    t = samples["t"].to_numpy()
    start_wall = int(header.get("start_wall_ns") or 0) + (int(t.min()) if len(t) else 0)
    threads = samples[["pid", "tid"]].drop_duplicates() if len(samples) else samples[["pid", "tid"]]
    duration = recording.duration
    result = {
        "source": recording.source,
        "format": ("%d.%d" % tuple(recording.meta["version"]) if recording.meta.get("version")
                   else header.get("peer_format")),
        "imported": header.get("imported"),
        "command": header.get("argv"),
        "pid": header.get("pid"),
        "python": header.get("python_version"),
        "executable": header.get("python_executable"),
        "host": header.get("host"),
        "recorder": header.get("recorder"),
        "start": (pd.Timestamp(start_wall, unit="ns", tz="UTC")
                  if len(t) and "start_wall_ns" in header else None),   # another profiler's file: unknown
        "duration": duration,
        "interval": interval / 1e9 if interval else None,
        "rate_requested": 1e9 / interval if interval else None,
        **sampling_rates(recording),
        "samples": len(samples),
        "threads": len(threads),
        "processes": int(samples["pid"].nunique()) if len(samples) else 0,
        "idle_share": float(samples["idle"].mean()) if len(samples) else 0.0,
        "gil_share": float(samples["gil"].mean()) if len(samples) else 0.0,
        "torn": int(samples["torn"].sum()),
        "stacks": len(recording.stack_table),
        "frames": len(recording.frames),
        "lost_bytes": recording.lost_bytes,
        "lost": list(recording.lost),
        "complete": recording.trailer is not None,
        "trailer": dict(recording.trailer or {}),
        "filters": list(recording.steps),
    }
    result["warnings"] = health_warnings(result)
    return result


def sampling_rates(recording: Recording) -> Dict[str, Any]:
    """How often the recorder sampled, in Hz, as a dict:

    ``rate_rounds``   sampling rounds per second (a round samples every live thread once):
                      the most-sampled thread's samples over the recording's duration, since
                      the samples of one round carry the times their stacks were read;
    ``rate_thread_median``, ``rate_main_thread``   per thread *while it was alive*: the
                      intervals between its first and last sample over that span, the median
                      over threads sampled at least twice, and the main thread's (the thread
                      whose tid is the recorded process id); ``rate_threads`` how many threads
                      the median is over.

    A mean over all threads would mislead: hundreds of short-lived threads each sampled a few
    times drag it far below the rate any thread was sampled at.
    """
    samples = recording.samples
    duration = recording.duration
    rates: Dict[str, Any] = {"rate_rounds": None, "rate_thread_median": None,
                             "rate_main_thread": None, "rate_threads": 0}
    if samples.empty:
        return rates
    spans = samples.groupby(["pid", "tid"], sort=False, observed=True)["t"].agg(["min", "max", "size"])
    rates["rate_rounds"] = float(spans["size"].max()) / duration if duration else None
    timed = spans[(spans["size"] > 1) & (spans["max"] > spans["min"])]
    per_thread = (timed["size"] - 1) / ((timed["max"] - timed["min"]) / 1e9)
    if len(per_thread):
        rates["rate_thread_median"] = float(per_thread.median())
        rates["rate_threads"] = len(per_thread)
    pid = recording.header.get("pid")
    if isinstance(pid, int) and (pid, pid) in per_thread.index:
        rates["rate_main_thread"] = float(per_thread.loc[(pid, pid)])
    return rates


#: Recorder health thresholds above which ``info`` warns.
ERROR_SHARE_WARNING = 0.01
LATE_SHARE_WARNING = 0.05
#: Share of the stacks read from outside that were read again, later than their round (when
#: they are more than ``ERROR_SHARE_WARNING`` of all samples).
REREAD_SHARE_WARNING = 0.1


def health_warnings(facts: Dict[str, Any]) -> List[str]:
    """Sentences about problems of the recording itself: torn tail, failed reads, a saturated
    recorder (samples taken late), so nobody trusts a bad recording without knowing it."""
    warnings = []
    trailer = facts["trailer"]
    if not facts["complete"] or facts["lost_bytes"]:
        warnings.append("the recording is incomplete (no trailer; %d bytes of a torn tail dropped): "
                        "the recorder was killed or the file was cut" % facts["lost_bytes"])
    errors, samples = trailer.get("errors") or 0, trailer.get("samples") or facts["samples"]
    if samples and errors / samples > ERROR_SHARE_WARNING:       # errors are samples (spec)
        warnings.append("%.1f%% of stack reads failed (%d errors): stacks may be missing or torn"
                        % (100 * errors / samples, errors))
    late, ticks = trailer.get("late") or 0, trailer.get("ticks") or 0
    if ticks and late / ticks > LATE_SHARE_WARNING:
        warnings.append("%.1f%% of sampling ticks were late: the recorder could not keep up with "
                        "the requested rate" % (100 * late / ticks))
    if facts["samples"] and facts["torn"] / facts["samples"] > ERROR_SHARE_WARNING:
        warnings.append("%d samples hold torn stacks" % facts["torn"])
    walked, reread = trailer.get("walked") or 0, trailer.get("reread") or 0   # (1.4+)
    if walked and reread / walked > REREAD_SHARE_WARNING and reread / samples > ERROR_SHARE_WARNING:
        # A read that tears is done again up to a millisecond later: where the stack changes
        # fastest, that moment falls in the calls that follow, more often in a long one.
        warnings.append("%.1f%% of the stacks read from the program's memory tore and were read "
                        "again, later than their round: their shares lean toward the longer "
                        "calls (as root, stacks are copied at interrupts instead)"
                        % (100 * reread / walked))
    return warnings
