"""Pictures of a recording, drawn with matplotlib (the ``plot`` extra: only some users need it,
and it draws better than code of ours would): the timeline of CPU per thread and memory, with
the busiest functions of a window.

The figures are made without pyplot, so nothing depends on a display or a backend: a notebook
shows the Figure returned, ``Figure.savefig`` writes PNG, SVG or PDF.
"""

from typing import Any, Optional

import numpy as np
import pandas as pd

from spyanalyze import views
from spyanalyze.errors import AnalysisError
from spyanalyze.filters import TimeBound, offset_ns
from spyanalyze.frames import label

#: Buckets a timeline is cut into when no frequency is given, and the shortest bucket: CPU time
#: comes in scheduler ticks, uneven over buckets of a few milliseconds.
TIMELINE_BUCKETS = 150
MIN_BUCKET_NS = 100_000_000
#: Functions listed in the busiest-functions panel.
FUNCTIONS = 12


class MissingDependency(AnalysisError):
    """An optional package a feature needs is not installed."""


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        raise MissingDependency("matplotlib is not installed: pip install 'spyrec[plot]'") from None
    return Figure


def auto_freq(recording: Any) -> str:
    """A bucket length that cuts the recording into about ``TIMELINE_BUCKETS`` buckets."""
    span_ns = max(1, int(recording.duration * 1e9))
    return "%dms" % (max(MIN_BUCKET_NS, span_ns // TIMELINE_BUCKETS) // 1_000_000)


def timeline(recording: Any, freq: Optional[str] = None, start: TimeBound = None,
             end: TimeBound = None, top: int = 8) -> Any:
    """A Figure: cores each thread kept busy (stacked, the ``top`` busiest threads and the rest),
    the process memory (RSS), and the functions that used the most CPU in the window from
    ``start`` to ``end`` (Timestamps or seconds since the start, as ``Recording.filter``
    takes them; the whole recording when neither is given), the window shaded."""
    Figure = _figure_class()
    if not len(recording.samples):
        raise AnalysisError("the recording holds no samples to plot")
    freq = freq or auto_freq(recording)
    threads = views.timeline_by_thread(recording, freq, top)
    overall = views.timeline(recording, freq)
    origin = overall.index[0]
    seconds = (overall.index - origin).total_seconds()
    figure = Figure(figsize=(11, 8), layout="constrained")
    grid = figure.add_gridspec(3, 1, height_ratios=(3, 1.2, 3))
    cpu, memory, functions = (figure.add_subplot(grid[i]) for i in range(3))
    cpu.stackplot(seconds, threads.to_numpy().T, labels=list(threads.columns), step="post")
    cpu.set_ylabel("cores busy")
    cpu.set_title("CPU per thread (%s buckets)" % freq, loc="left")
    cpu.legend(loc="upper right", fontsize="small", ncols=2)
    memory.step(seconds, overall["rss"].to_numpy() / 2 ** 20, where="post", color="tab:purple")
    memory.set_ylabel("RSS, MiB")
    memory.set_xlabel("seconds since %s" % origin.strftime("%Y-%m-%d %H:%M:%S UTC"))
    memory.sharex(cpu)
    window = recording.filter(start=start, end=end) if start is not None or end is not None \
        else recording
    if window is not recording:
        lead = _lead(recording, origin)
        low_ns, high_ns = offset_ns(recording, start), offset_ns(recording, end)
        low = (low_ns or 0) / 1e9 - lead
        high = high_ns / 1e9 - lead if high_ns is not None else seconds[-1]
        for axes in (cpu, memory):
            axes.axvspan(low, high, color="grey", alpha=0.2)
    _busiest(functions, window, "in the window" if window is not recording else "")
    return figure


def _lead(recording: Any, origin: pd.Timestamp) -> float:
    """Seconds from the recording's origin (``t`` = 0) to the first bucket's start."""
    start_wall = int(recording.header.get("start_wall_ns") or 0)
    return (origin.value - start_wall) / 1e9


def _busiest(axes: Any, recording: Any, where: str) -> None:
    table = views.by_function(recording.filter(idle="exclude"), weight="cpu") \
        if recording.samples["idle"].any() and not recording.samples["idle"].all() \
        else views.by_function(recording, weight="cpu")
    table = table[table["self_share"] > 0].head(FUNCTIONS)
    labels = [label if len(label) <= 70 else label[:69] + "…" for label in _labels(table)]
    positions = np.arange(len(table))[::-1]
    axes.barh(positions, table["self_share"] * 100, color="tab:orange", label="self")
    axes.barh(positions, (table["total_share"] - table["self_share"]) * 100,
              left=table["self_share"] * 100, color="tab:orange", alpha=0.3, label="total")
    axes.set_yticks(positions, labels, fontsize="small")
    axes.set_xlabel("share of CPU time, %")
    axes.set_title("busiest functions %s" % where, loc="left")
    axes.legend(loc="lower right", fontsize="small")


def _labels(table: pd.DataFrame):
    return [label(q, m, n) for q, m, n in zip(table["qualname"], table["module"], table["line"])]
