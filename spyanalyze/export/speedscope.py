"""speedscope JSON (https://www.speedscope.app/file-format-schema.json).

One ``sampled`` profile per thread, in time order, all sharing one frame table.  A sample is a
list of frame indices, root first; consecutive samples of a thread with the same stack are
merged into one entry whose weight is their sum, which keeps the time-order view intact and the
file small.  ``samples`` and ``weights`` always have the same length (speedscope refuses a file
otherwise).  Weights: ``wall`` (default) and ``cpu`` in nanoseconds, ``samples`` in sampling
ticks (unit ``none``; 1 each unless the recorder fell behind, see ``sample_weights``).  For wall
weights ``startValue`` is the time of the thread's first sample, since the recording's origin;
``endValue`` is ``startValue`` plus the weights.
The JSON is assembled from per-stack pieces so a million samples take no loop in Python.
"""

import json
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, TextIO

import numpy as np

from spyanalyze.tables import check_weight, thread_label
from spyanalyze.version import exporter

if TYPE_CHECKING:
    from spyanalyze.recording import Recording

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
UNITS = {"wall": "nanoseconds", "cpu": "nanoseconds", "samples": "none"}


def _frames(recording):
    """speedscope frames (deduplicated by name, file, line) and the index of every frame id."""
    frames = recording.frames
    index, shared = {}, []
    position = np.empty(len(frames), dtype=np.int64)
    # a native frame's line is in its source file (its library is its ``file``)
    files = frames["source"].where(frames["source"] != "", frames["file"])
    for fid, (qualname, file, line) in enumerate(zip(frames["qualname"], files, frames["line"])):
        key = (qualname, file, int(line))
        if key not in index:
            index[key] = len(shared)
            entry = {"name": qualname, "file": file}
            if line > 0:                 # 0: the instruction has no line
                entry["line"] = int(line)
            shared.append(entry)
        position[fid] = index[key]
    return shared, position


def profiles(recording: "Recording", weight: str = "wall") -> List[Dict[str, Any]]:
    """The profile dicts' scalar fields plus, per thread, (name, run stack ids, run weights)."""
    check_weight(weight)
    samples = recording.samples
    pids = samples["pid"].to_numpy()
    several = len(np.unique(pids)) > 1
    result = []
    for (pid, tid), group in samples.groupby(["pid", "tid"], sort=True, observed=True):
        stacks = group["stack"].to_numpy()
        w = group["ticks" if weight == "samples" else weight].to_numpy()
        starts = np.flatnonzero(np.r_[True, stacks[1:] != stacks[:-1]])
        run_weights = np.add.reduceat(w, starts) if len(w) else w
        name = thread_label(group["thread"].iloc[0], tid)
        if several:
            name = "pid %d: %s" % (pid, name)
        start = 0
        if weight == "wall":
            start = max(0, int(group["t"].iloc[0]))
        result.append({"name": name, "stacks": stacks[starts], "weights": run_weights, "start": start,
                       "samples": len(group)})
    return result


def write(recording: "Recording", out: TextIO, weight: str = "wall", name: Optional[str] = None) -> int:
    """Write a speedscope file to the text stream ``out``; returns the number of profiles."""
    shared, position = _frames(recording)
    tuples = recording.stack_table.tuples
    stack_json = np.empty(len(tuples), dtype=object)
    stack_json[:] = ["[" + ",".join(map(str, position[list(s)].tolist())) + "]" if s else "[]"
                     for s in tuples]
    threads = profiles(recording, weight)
    active = int(np.argmax([p["samples"] for p in threads])) if threads else 0
    head = {"$schema": SCHEMA_URL, "exporter": exporter(),
            "name": name or os.path.basename(recording.source or "recording"),
            "activeProfileIndex": active, "shared": {"frames": shared}}
    text = json.dumps(head)
    out.write(text[:-1] + ', "profiles": [')
    for number, profile in enumerate(threads):
        weights = profile["weights"]
        if weights.dtype.kind == "f":  # samples in ticks: 1.0 unless the recorder fell behind
            weights = weights.round(3)
        total = weights.sum().item()
        fields = {"type": "sampled", "name": profile["name"], "unit": UNITS[weight],
                  "startValue": profile["start"], "endValue": profile["start"] + total}
        out.write(("," if number else "") + json.dumps(fields)[:-1])
        out.write(', "samples": [' + ",".join(stack_json[profile["stacks"]]) + "]")
        out.write(', "weights": [' + ",".join(map(repr, weights.tolist())) + "]}")
    out.write("]}\n")
    return len(threads)
