"""Parquet export: a recording as a dataset directory that Dask, Spark or DuckDB read as it is.

Many recordings written to one directory make one dataset: each table is hive-partitioned by
``host=.../pid=...``, and every row carries its ``recording`` id (see ``spyanalyze.fleet``),
since stack and frame ids mean something only inside one recording.  Tables::

    samples/   the fleet rows of ``spyanalyze.fleet.sample_table`` (leaf function and the
               stack's functions on each row: "which function grew" needs no join)
    stacks/    recording, stack, frames (list of frame ids, root first), depth, leaf
    frames/    recording, frame, file, name, qualname, line, column, source, module, kind, label
    threads/, processes/   the THREAD and PROCESS records, with their recording id

A file is named after its recording, so exporting another recording into the same directory
adds to the dataset; exporting the same recording twice is refused, and so is a directory that
holds anything else, or a file (nothing of the user's is overwritten).
"""

import os
import re
from typing import Any, List

import pandas as pd

from spyanalyze import fleet
from spyanalyze.errors import AnalysisError

TABLES = ["samples", "stacks", "frames", "threads", "processes"]


def _pyarrow() -> Any:
    fleet.require("pyarrow")
    return fleet.require("pyarrow.parquet")


def _tables(rec) -> dict:
    rid, host = fleet.recording_id(rec), fleet.host_of(rec)
    pid = int(rec.header.get("pid", 0) or 0)

    def tag(table: pd.DataFrame, name: str) -> pd.DataFrame:
        table = table.reset_index().rename(columns={"index": name}) if name else table.copy()
        table.insert(0, "recording", rid)
        table["host"], table["pid"] = host, table["pid"] if "pid" in table else pid
        return table

    stacks = rec.stacks[["frames", "depth", "leaf"]].copy()
    stacks["frames"] = [list(frames) for frames in stacks["frames"]]
    frames = rec.frames.copy()
    for column in frames.columns:
        if isinstance(frames[column].dtype, pd.CategoricalDtype):
            frames[column] = frames[column].astype(object)
    return {"samples": fleet.sample_table(rec, arrow=True), "stacks": tag(stacks, "stack"),
            "frames": tag(frames, "frame"), "threads": tag(_plain(rec.threads), ""),
            "processes": tag(_plain(rec.processes), "")}


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """Columns Parquet stores as they are: anything of mixed Python objects as text."""
    table = table.reset_index(drop=True).copy()
    for column in table.columns:
        if table[column].dtype == object and not all(
                isinstance(v, (str, type(None))) for v in table[column]):
            table[column] = table[column].map(lambda v: None if v is None else str(v))
    return table


def _file_name(rec) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", fleet.recording_id(rec)) + ".parquet"


def write(recording, out: str, **_options) -> List[str]:
    """Write ``recording`` into the dataset directory ``out`` (created if missing); returns the
    files written.  Refuses a recording the directory already holds."""
    pq = _pyarrow()
    import pyarrow as pa
    check_target(out)
    name = _file_name(recording)
    host = _escape(fleet.host_of(recording))
    parts = []      # (folder, file, rows): a table with a pid column is split by its pids
    for kind, frame in _tables(recording).items():
        groups = list(frame.groupby("pid", sort=True)) or [(recording.header.get("pid", 0), frame)]
        for pid, rows in groups:
            folder = os.path.join(out, kind, "host=%s" % host, "pid=%d" % int(pid or 0))
            parts.append((folder, os.path.join(folder, name), rows.drop(columns=["host", "pid"])))
    for _folder, path, _rows in parts:
        if os.path.exists(path):
            raise AnalysisError("%s already holds this recording (%s): not overwriting it"
                                % (out, path))
    for folder, path, rows in parts:
        os.makedirs(folder, exist_ok=True)
        table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
        # Arrow's own types only: pandas' dtype names (an Arrow list column's) do not read back
        pq.write_table(table.replace_schema_metadata(None), path)
    return [path for _folder, path, _rows in parts]


def check_target(out: str) -> None:
    """``out`` must be missing, an empty directory, or a dataset this exporter wrote: anything
    else (a file, another directory's contents) is the user's and is not written into."""
    if not os.path.exists(out):
        return
    if not os.path.isdir(out):
        raise AnalysisError("%s exists and is not a directory: parquet export writes a dataset "
                            "directory" % out)
    strangers = sorted(set(os.listdir(out)) - set(TABLES))
    if strangers:
        raise AnalysisError("%s is not empty and is not a dataset written by spyanalyze export "
                            "(it holds %s): choose another directory" % (out, strangers[0]))


def _escape(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", host) or "unknown"
