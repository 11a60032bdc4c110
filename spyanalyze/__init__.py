"""spyanalyze: analyse .spy recordings with pandas.

Notebook API::

    import spyanalyze
    rec = spyanalyze.load("run.spy")
    rec.samples, rec.frames, rec.stacks          # DataFrames; samples indexed by time (UTC)
    rec.leaves()                                  # each sample's innermost frame
    rec.by_function(); rec.by_line(); rec.by_file(); rec.by_thread(); rec.timeline("100ms")
    rec.by_task(); rec.tasks_as_threads()         # asyncio tasks
    rec.filter(start=rec.timeline().index[1])     # Timestamps or seconds since the start
    busy = rec.filter(threads="MainThread", idle="exclude", prune="stdlib")
    spyanalyze.diff(before, after)                # per-function change and significance
    spyanalyze.export.speedscope.write(rec, open("run.speedscope.json", "w"))
    rec.plot_timeline(start=2.0, end=3.5)        # a matplotlib Figure (the ``plot`` extra)
    rec.plot_threads()                            # time per thread; ``rec`` in Jupyter: a summary
    df = spyanalyze.load_many("runs/*.spy")       # many recordings as one Dask DataFrame
    spyanalyze.fleet.function_totals(df)          # (needs the fleet extra: pyarrow, dask)

Time is in nanoseconds in every table.  The ``spyanalyze`` command is a thin layer over the
same functions.
"""

try:
    import numpy  # noqa: F401
    import pandas  # noqa: F401
except ModuleNotFoundError as missing:  # installed without the extra the analyser needs
    import os
    import sys
    if sys.argv and (sys.argv[0] == "-m" or os.path.basename(sys.argv[0]) == "spyanalyze"):
        sys.exit("spyanalyze: error: %s is not installed: pip install 'spyrec[analyze]'"
                 % missing.name)
    raise ModuleNotFoundError("%s is not installed: pip install 'spyrec[analyze]'"
                              % missing.name, name=missing.name) from None

from spyanalyze import errors, export, filters, fleet, views  # noqa: E402
from spyanalyze.diff import diff
from spyanalyze.fleet import load_many
from spyanalyze.recording import Recording, load
from spyanalyze.version import __version__
from spyanalyze.writer import write
from spyanalyze import plot  # noqa: E402  (imports matplotlib only when drawing)

__all__ = ["Recording", "diff", "errors", "export", "filters", "fleet", "load", "load_many", "plot", "views",
           "write", "__version__"]
