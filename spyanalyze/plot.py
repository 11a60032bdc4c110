"""Pictures of a recording with matplotlib: a timeline (CPU per thread, memory, the busy
functions of a window) and time per thread as bars (CPU, and the rest).

matplotlib is an optional extra (``spyrec[plot]``): only some users draw, and a well-kept
plotting library does this better than code of our own.  It is imported when a plot is asked
for, never when ``spyanalyze`` is, and without a display it draws with the Agg backend.
"""

import os
import sys
from typing import Any, Dict, Iterable, Optional, Union

import numpy as np
import pandas as pd

from spyanalyze import filters
from spyanalyze.errors import AnalysisError, EmptyResult, TooLarge

#: A ``spyanalyze.recording.Recording``, whose methods import this module: importing it here
#: would close an import cycle (tests/test_imports.py).
Recording = Any

#: Bins a timeline aims for when no bin width is given, and the most it draws (a line of more
#: steps than a picture has pixels says nothing more, and costs memory per thread).
TARGET_BINS = 100
MAX_BINS = 20_000


class PlottingUnavailable(AnalysisError):
    """matplotlib (the ``plot`` extra) is not installed."""


def pyplot() -> Any:
    """matplotlib's pyplot, on the Agg backend when there is no display; a clear error without it."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise PlottingUnavailable("matplotlib is not installed: pip install 'spyrec[plot]'") from None
    headless = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    chosen = "MPLBACKEND" in os.environ or "matplotlib.pyplot" in sys.modules or "ipykernel" in sys.modules
    if headless and not chosen:      # a notebook or a user's own choice stands
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def thread_cpu(recording: Recording, bin_s: Optional[float] = None) -> pd.DataFrame:
    """CPU use per thread over time: cores busy on average in each bin (from the ``cpu``
    weights), one column per thread, indexed by the bin's start in seconds since the origin."""
    samples = recording.samples
    bucket, index, step = _bins(recording, bin_s)
    n_bins = len(index)
    cpu = samples["cpu"].to_numpy()
    columns: Dict[str, np.ndarray] = {}
    for (_pid, tid), rows in samples.groupby(["pid", "tid"], sort=True, observed=True).indices.items():
        name = str(samples["thread"].iat[rows[0]])
        key = name if name not in columns else "%s (%d)" % (name, tid)
        columns[key] = np.bincount(bucket[rows], weights=cpu[rows], minlength=n_bins) / step
    return pd.DataFrame(columns, index=index)


def memory(recording: Recording, bin_s: Optional[float] = None) -> pd.Series:
    """Resident memory (bytes, summed over processes) per bin, like ``thread_cpu``'s bins."""
    samples = recording.samples
    bucket, index, _step = _bins(recording, bin_s)
    per_process = pd.DataFrame({"bucket": bucket, "pid": samples["pid"].to_numpy(),
                                "rss": samples["rss"].to_numpy()})
    rss = per_process.groupby(["bucket", "pid"])["rss"].max().groupby(level="bucket").sum()
    rss = rss.reindex(np.arange(len(index))).ffill().fillna(0)
    return pd.Series(rss.to_numpy(), index=index, name="rss")


def busy_functions(recording: Recording, start: filters.TimeBound = None, end: filters.TimeBound = None,
                   top: int = 10) -> pd.DataFrame:
    """The ``top`` functions by samples (self time, threads not idle) between start and end."""
    window = recording.filter(start=start, end=end, idle="exclude")
    if window.empty:
        return pd.DataFrame(columns=["qualname", "module", "samples", "self_share"])
    table = window.by_function()
    # Callers only are dropped (their time is their callees'), and so is a function whose weight
    # rounds to no sample: met only in rounds that ran late, it would be listed with 0 samples.
    table = table[table["self_samples"] > 0]
    return table[["qualname", "module", "self_samples", "self_share"]].rename(
        columns={"self_samples": "samples"}).head(top).reset_index(drop=True)


def timeline(recording: Recording, start: filters.TimeBound = None, end: filters.TimeBound = None,
             threads: Union[str, int, Iterable[Union[str, int]], None] = None,
             bin_s: Optional[float] = None, top: int = 10, title: Optional[str] = None) -> Any:
    """A matplotlib Figure: CPU per thread (cores) and memory over time; with ``start`` or
    ``end`` (seconds since the start or Timestamps, as ``Recording.filter`` takes) the window
    is shaded and its busiest functions are listed below."""
    plt = pyplot()
    if threads:
        recording = recording.filter(threads=threads)
    cpu = thread_cpu(recording, bin_s)
    rss = memory(recording, bin_s)
    windowed = start is not None or end is not None
    figure = plt.figure(figsize=(10, 7.5 if windowed else 5.5), layout="constrained")
    grid = figure.add_gridspec(3 if windowed else 2, 1, height_ratios=[3, 1.3, 2.2][:3 if windowed else 2])
    cpu_axes = figure.add_subplot(grid[0])
    order = cpu.mean().sort_values(ascending=False).index
    for name in order:
        cpu_axes.step(cpu.index, cpu[name], where="post", label=name)
    cpu_axes.set_ylabel("CPU (cores)")
    cpu_axes.set_ylim(0, max(float(cpu.max().max()) * 1.1, 0.1))
    cpu_axes.set_title(title or "CPU per thread and memory: %s" % (recording.source or "recording"))
    if len(order) <= 12:
        cpu_axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    memory_axes = figure.add_subplot(grid[1], sharex=cpu_axes)
    memory_axes.step(rss.index, rss / 2**20, where="post", color="tab:gray")
    memory_axes.set_ylabel("RSS (MiB)")
    memory_axes.set_ylim(0, max(float(rss.max()) / 2**20 * 1.15, 1.0))   # a flat line shows
    memory_axes.set_xlabel("seconds since the recording started")
    if windowed:
        low = filters.offset_ns(recording, start)
        high = filters.offset_ns(recording, end)
        low_s = cpu.index[0] if low is None else low / 1e9
        high_s = cpu.index[-1] + (cpu.index[1] - cpu.index[0] if len(cpu) > 1 else 0) \
            if high is None else high / 1e9
        for axes in (cpu_axes, memory_axes):
            axes.axvspan(low_s, high_s, color="tab:orange", alpha=0.15)
        table_axes = figure.add_subplot(grid[2])
        _busy_table(table_axes, busy_functions(recording, start, end, top), low_s, high_s)
    return _detached(plt, figure)


def _busy_table(axes, busy, low_s, high_s):
    axes.axis("off")
    axes.set_title("busiest functions, %.2fs to %.2fs" % (low_s, high_s), fontsize="medium")
    if busy.empty:
        axes.text(0.5, 0.5, "no samples of running threads in this window", ha="center")
        return
    rows = [[_shorten(q, 50), _shorten(m, 40), "%d" % s, "%.1f%%" % (100 * share)]
            for q, m, s, share in busy.itertuples(index=False)]
    table = axes.table(cellText=rows, colLabels=["function", "module", "samples", "share"],
                       loc="upper center", cellLoc="left", colWidths=[0.45, 0.35, 0.1, 0.1])
    table.auto_set_font_size(False)
    table.set_fontsize(8)


def threads(recording: Recording, top: int = 20, title: Optional[str] = None) -> Any:
    """A matplotlib Figure: wall time per thread as bars, split into CPU and the rest (waiting,
    sleeping), for the ``top`` threads by samples."""
    plt = pyplot()
    table = recording.by_thread()
    if table.empty:
        raise EmptyResult("nothing to plot: the recording has no samples")
    table = table.head(top).iloc[::-1]
    labels = ["%s (%d)" % (_shorten(str(name), 30), tid) for name, tid in zip(table["thread"], table["tid"])]
    cpu = table["cpu"].to_numpy() / 1e9
    other = np.maximum(table["wall"].to_numpy() / 1e9 - cpu, 0)
    figure, axes = plt.subplots(figsize=(8, 1.2 + 0.35 * len(table)), layout="constrained")
    axes.barh(labels, cpu, color="tab:red", label="CPU")
    axes.barh(labels, other, left=cpu, color="tab:blue", alpha=0.5, label="not on CPU")
    axes.set_xlabel("seconds")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")   # beside the bars
    axes.set_title(title or "time per thread: %s" % (recording.source or "recording"))
    return _detached(plt, figure)


def _detached(plt, figure):
    """The figure, no longer pyplot's: Jupyter shows the returned value once (pyplot would
    show it a second time), and a loop drawing many keeps no figure alive."""
    plt.close(figure)
    return figure


FORMATS = ("png", "svg")


def image_format(path: Union[str, "os.PathLike[str]"], fmt: Optional[str] = None) -> str:
    """``fmt``, or the format a path's suffix names (.png, .svg); an error for any other."""
    fmt = fmt or os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if fmt not in FORMATS:
        raise AnalysisError("%s: a picture is written as .png or .svg (or say --format)" % os.fspath(path))
    return fmt


def save(figure: Any, path: Any, fmt: Optional[str] = None) -> None:
    """Write a figure as PNG or SVG to a path (format told by its suffix) or a binary file."""
    if fmt is None:
        fmt = image_format(path)
    figure.savefig(path, format=fmt, dpi=110)


def _bins(recording, bin_s):
    """Each sample's bin, the bins' starts (seconds since the origin) and the width in ns."""
    if recording.empty:
        raise EmptyResult("nothing to plot: the recording has no samples")
    t = recording.samples["t"].to_numpy()
    first = int(t.min())
    step = int((bin_s or _default_bin(recording)) * 1e9)
    if step <= 0:
        raise ValueError("the bin width must be positive")
    bucket = (t - first) // step
    n_bins = int(bucket.max()) + 1
    if n_bins > MAX_BINS:
        raise TooLarge("%d bins of %gs over %.1fs (at most %d): use a wider bin"
                       % (n_bins, step / 1e9, recording.duration, MAX_BINS))
    return bucket, pd.Index((first + np.arange(n_bins) * step) / 1e9, name="seconds"), step


def _default_bin(recording):
    """A width giving about TARGET_BINS bins, at least one sampling interval, rounded to 1-2-5."""
    span = max(recording.duration, 1e-3)
    raw = max(span / TARGET_BINS, recording.interval_ns / 1e9 or 0.001)
    magnitude = 10 ** np.floor(np.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def _shorten(text, width):
    text = str(text)
    return text if len(text) <= width else text[:width - 1] + "…"
