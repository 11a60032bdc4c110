"""Fleets of recordings: one flat samples table per recording, and a Dask DataFrame over many.

A platform team's question ("which function grew across last week's 500 recordings") is one
groupby over many recordings, too many for memory.  Stack and frame ids mean something only
inside one recording, so a fleet table is denormalised: each sample carries its recording's
id, host and pid, its leaf function and the distinct functions of its stack, and needs no join.

``sample_table(rec)`` builds that table for one Recording (columns in ``COLUMNS``)::

    recording  str      host:pid:start_wall_ns, unique per recording
    source     str      the path the recording was loaded from
    host, pid, tid, thread   where the sample was taken (host "unknown" when not recorded)
    t          int64    ns since the recording's origin; timestamp: UTC wall clock
    stack      int64    the stack id inside its recording (with ``recording``, a key)
    ticks, wall, cpu    the sample's weights, as in ``Recording.samples``
    idle, gil  bool
    module, qualname    the leaf function (module-relative file, qualified name)
    function   str      "qualname (module)": the leaf function's label
    functions  list[str]  the distinct function labels of the stack, root first

``load_many(paths)`` gives a Dask DataFrame of these rows, one partition per .spy file (read
lazily through ``spyanalyze.load``), or reads a Parquet dataset written by ``spyanalyze export
--format parquet``.  A file that cannot be read raises the package's error naming it: a fleet
answer silently missing recordings would be wrong without saying so.  ``function_totals(df)``
gives per-function self and total weights equal to the sum of ``rec.by_function()`` over the
recordings.
"""

import glob
import os
from typing import Any, Iterable, List, Optional, Union

import numpy as np
import pandas as pd

from spyanalyze.errors import AnalysisError, UnreadableFile

COLUMNS = ["recording", "source", "host", "pid", "tid", "thread", "t", "timestamp", "stack", "ticks",
           "wall", "cpu", "idle", "gil", "module", "qualname", "function", "functions"]

#: Per-function weights: self (the function is the leaf) and total (anywhere in the stack).
TOTALS = ["self_samples", "total_samples", "self_wall", "total_wall", "self_cpu", "total_cpu"]


class MissingDependency(AnalysisError):
    """An optional dependency of the fleet tools (pyarrow, dask) is not installed."""


def require(module: str) -> Any:
    """Import ``module`` or raise ``MissingDependency`` with the one line that says what to do."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency("%s is not installed: pip install 'spyrec[fleet]'"
                                % module.split(".")[0]) from None


def recording_id(rec) -> str:
    """host:pid:start_wall_ns: the same recording copied elsewhere keeps its id."""
    header = rec.header
    return "%s:%s:%s" % (host_of(rec), header.get("pid", 0), header.get("start_wall_ns", 0))


def host_of(rec) -> str:
    return str(rec.header.get("host") or "unknown")


def function_labels(qualnames, modules) -> np.ndarray:
    return (pd.Series(qualnames, dtype=object) + " ("
            + pd.Series(modules, dtype=object) + ")").to_numpy(object)


def sample_table(rec, arrow: bool = False) -> pd.DataFrame:
    """The recording's samples as fleet rows (see the module docstring); ``functions`` holds
    Python lists, or with ``arrow`` an Arrow list column (what Dask keeps as lists)."""
    codes, keys = rec.frame_codes("function")
    labels = function_labels(keys["qualname"], keys["module"])
    stacks = rec.stacks
    leaf = stacks["leaf"].to_numpy()
    # per distinct stack, never per sample
    per_stack = [list(dict.fromkeys(labels[codes[list(frames)]].tolist())) if len(frames) else []
                 for frames in stacks["frames"]]
    samples = rec.samples
    stack = samples["stack"].to_numpy()
    leaf_code = np.where(leaf >= 0, codes[np.maximum(leaf, 0)], -1)[stack]
    has_leaf = leaf_code >= 0
    module = np.where(has_leaf, keys["module"].to_numpy(object)[np.maximum(leaf_code, 0)], None)
    qualname = np.where(has_leaf, keys["qualname"].to_numpy(object)[np.maximum(leaf_code, 0)], None)
    function = np.where(has_leaf, labels[np.maximum(leaf_code, 0)], None)
    if arrow:
        import pyarrow as pa
        functions: Any = pd.arrays.ArrowExtensionArray(
            pa.array(per_stack, type=pa.list_(pa.string())).take(pa.array(stack)))
    else:
        stack_lists = np.empty(len(per_stack), dtype=object)
        stack_lists[:] = per_stack
        functions = stack_lists[stack] if len(stack) else []
    table = pd.DataFrame({
        "recording": recording_id(rec), "source": str(rec.source or ""), "host": host_of(rec),
        "pid": samples["pid"].to_numpy(np.int64), "tid": samples["tid"].to_numpy(np.int64),
        "thread": samples["thread"].astype(str).to_numpy(object),
        "t": samples["t"].to_numpy(np.int64),
        "timestamp": pd.DatetimeIndex(samples.index).tz_convert("UTC").array,
        "stack": stack.astype(np.int64),
        "ticks": samples["ticks"].to_numpy(np.float64), "wall": samples["wall"].to_numpy(np.int64),
        "cpu": samples["cpu"].to_numpy(np.int64), "idle": samples["idle"].to_numpy(bool),
        "gil": samples["gil"].to_numpy(bool), "module": module, "qualname": qualname,
        "function": function, "functions": functions,
    }, columns=COLUMNS)
    return table


def sample_table_empty(arrow: bool = False) -> pd.DataFrame:
    dtypes = {"recording": object, "source": object, "host": object, "pid": np.int64,
              "tid": np.int64, "thread": object, "t": np.int64, "timestamp": "datetime64[ns, UTC]",
              "stack": np.int64,
              "ticks": np.float64, "wall": np.int64, "cpu": np.int64, "idle": bool, "gil": bool,
              "module": object, "qualname": object, "function": object, "functions": object}
    if arrow:
        import pyarrow as pa
        dtypes["functions"] = pd.ArrowDtype(pa.list_(pa.string()))
    return pd.DataFrame({name: pd.Series(dtype=dtypes[name]) for name in COLUMNS})


def _load_one(path: str) -> pd.DataFrame:
    from spyanalyze.recording import load
    return sample_table(load(path), arrow=True)


def expand(paths: Union[str, "os.PathLike[str]", Iterable[Union[str, "os.PathLike[str]"]]]) -> List[str]:
    """A glob, a path, or a list of either, as a sorted list of paths; none is an error."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found: List[str] = []
    for item in items:
        item = os.fspath(item)
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            raise UnreadableFile("%s: no file matches" % item)
        for match in matches:
            if not os.path.exists(match):
                raise UnreadableFile("%s: no such file or directory" % match)
        found.extend(matches)
    if not found:
        raise UnreadableFile("no recordings given")
    return found


def load_many(paths, columns=None) -> Any:
    """A Dask DataFrame of the fleet rows of many recordings: .spy files (a glob, paths, or a
    list), one partition each, read lazily; or a Parquet dataset directory written by
    ``spyanalyze export --format parquet`` (its ``samples`` table)."""
    require("pyarrow")
    dd = require("dask.dataframe")
    found = expand(paths)
    if len(found) == 1 and os.path.isdir(found[0]):
        return read_samples(found[0], columns)
    for path in found:
        if os.path.isdir(path):
            raise UnreadableFile("%s is a directory: give .spy files or one Parquet dataset" % path)
    frame = dd.from_map(_load_one, found, meta=sample_table_empty(arrow=True), enforce_metadata=False)
    return frame[columns] if columns is not None else frame


def read_samples(directory: str, columns: Optional[List[str]] = None) -> Any:
    """The ``samples`` table of a dataset directory as a Dask DataFrame (``host`` and ``pid``
    from the partition folders)."""
    require("pyarrow")
    dd = require("dask.dataframe")
    folder = os.path.join(directory, "samples")
    if not os.path.isdir(folder):
        raise AnalysisError("%s is not a Parquet dataset written by spyanalyze export (no samples/)"
                            % directory)
    frame = dd.read_parquet(folder, dataset={"partitioning": "hive"})
    frame = frame.astype({"pid": "int64", "host": "object"})
    return frame[columns] if columns is not None else frame[COLUMNS]


_WEIGHTS = ["ticks", "wall", "cpu"]
_PARTIAL = ["recording", "function"] + ["%s_%s" % (kind, w) for kind in ("self", "total")
                                        for w in _WEIGHTS]


def _partial_totals(part: pd.DataFrame) -> pd.DataFrame:
    """Unrounded self and total weights per (recording, function) of one partition: each
    distinct stack is weighed once and only then spread over its functions, so the cost follows
    the stacks, not samples times depth."""
    keys = ["recording", "stack"]
    per_stack = part.groupby(keys, sort=False)[_WEIGHTS].sum()
    first = part.drop_duplicates(keys).set_index(keys)
    per_stack["functions"] = first["functions"].reindex(per_stack.index)
    per_stack["function"] = first["function"].reindex(per_stack.index)
    per_stack = per_stack.reset_index()
    self_w = per_stack[per_stack["function"].notnull()].groupby(
        ["recording", "function"])[_WEIGHTS].sum().add_prefix("self_")
    spread = per_stack[["recording", "functions"] + _WEIGHTS].explode("functions")
    spread = spread[spread["functions"].notnull()].rename(columns={"functions": "function"})
    total_w = spread.groupby(["recording", "function"])[_WEIGHTS].sum().add_prefix("total_")
    table = total_w.join(self_w, how="left").fillna(0.0).reset_index()
    table["recording"] = table["recording"].astype(object)
    table["function"] = table["function"].astype(object)
    return table[_PARTIAL]


def function_totals(samples) -> pd.DataFrame:
    """Per function label: ``TOTALS`` as ``rec.by_function()`` gives them, summed over the
    recordings (each recording's weights rounded as ``by_function`` rounds them), heaviest
    self first.  ``samples`` is a pandas or Dask frame of fleet rows."""
    columns = ["recording", "stack", "function", "functions"] + _WEIGHTS
    if hasattr(samples, "map_partitions"):
        meta = pd.DataFrame({c: pd.Series(dtype=object if c in ("recording", "function") else float)
                             for c in _PARTIAL})
        parts = samples[columns].map_partitions(_partial_totals, meta=meta)
        summed = parts.groupby(["recording", "function"]).sum().compute()
    else:
        summed = _partial_totals(samples[columns]).groupby(["recording", "function"]).sum()
    # round per recording, and leave out what was never sampled, as by_function does
    sampled = summed["total_ticks"].to_numpy() > 0
    table = summed.astype(np.float64).round().astype(np.int64)
    table.columns = [c.replace("_ticks", "_samples") for c in table.columns]
    table = table[sampled][TOTALS].groupby(level="function").sum()
    table.index = pd.Index(table.index.astype(object), name="function")
    return table.sort_index().sort_values(["self_samples", "total_samples"], ascending=False,
                                          kind="stable")
