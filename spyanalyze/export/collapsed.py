"""Collapsed ("folded") stacks, as flamegraph.pl, speedscope and inferno read them.

One line per distinct stack: ``frame;frame;frame weight``, root first, matching
``^(.*) (\\d+)$``.  A frame reads ``qualname (module:line)`` as py-spy writes it (see
``spyanalyze.frames.labels``), with the qualified name where the Python version records one
(``co_qualname``, 3.11+; older versions give the plain name) and the module-relative path (see
``paths.module_paths``).  Samples without Python frames are the root ``<no Python frames>``.  Weights
are integers: sample counts by default, microseconds for ``weight="wall"`` or ``"cpu"``; a
stack whose weight rounds to 0 is left out.  Lines are sorted, so output is deterministic.
A kernel function reads ``name_[k]``, as Linux perf's stack collapsing writes it and
flamegraph.pl colours it.
"""

from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, TextIO

import numpy as np
import pandas as pd

from spyanalyze.frames import NO_PYTHON_FRAMES, labels
from spyanalyze.tables import check_weight, thread_keys, thread_label
from spyanalyze.text import collapsed_name

if TYPE_CHECKING:
    from spyanalyze.recording import Recording

#: Unit of time weights in the output.
UNIT_NS = 1000


def frame_texts(recording: "Recording", lines: bool = True,
                rename: Optional[Mapping[str, str]] = None) -> List[str]:
    """The text of every frame id, safe for the format (see ``collapsed_name``)."""
    frames = recording.frames
    modules = frames["module"]
    if rename:
        modules = modules.map(lambda m: rename.get(m, m))
    texts = labels(frames["qualname"], modules,
                   frames["line"] if lines else np.zeros(len(frames), dtype=np.int64),
                   frames["source"] if lines else None)
    kernel = (frames["kind"] == "kernel").to_numpy()
    return [collapsed_name(name) + "_[k]" if in_kernel else collapsed_name(text)
            for text, name, in_kernel in zip(texts, frames["qualname"], kernel)]


def stack_weights_by_text(recording: "Recording", weight: str = "samples", lines: bool = True,
                          rename: Optional[Mapping[str, str]] = None,
                          threads: bool = False) -> pd.Series:
    """A Series: weight per stack text (samples, or nanoseconds for time weights).

    With ``threads`` each stack gets a root frame naming its thread, as py-spy ``--threads``.
    """
    check_weight(weight)
    texts = frame_texts(recording, lines, rename)
    tuples = recording.stack_table.tuples
    samples = recording.samples
    stack_ids = samples["stack"].to_numpy()
    w = samples["ticks" if weight == "samples" else weight].to_numpy()
    if threads:
        thread_key = thread_keys(samples)
        thread_codes, _keys = pd.factorize(thread_key)
        first = np.unique(thread_codes, return_index=True)[1]
        thread_names = [collapsed_name(thread_label(name, tid)) for name, tid in
                        zip(samples["thread"].to_numpy()[first], samples["tid"].to_numpy()[first].tolist())]
        key = thread_codes.astype(np.int64) * len(tuples) + stack_ids
    else:
        thread_names = [None]
        key = stack_ids
    combined, inverse = np.unique(key, return_inverse=True)
    per_key = np.bincount(inverse, weights=w, minlength=len(combined))
    stack_text: Dict[int, str] = {}
    rows = []
    for k in combined.tolist():
        thread, sid = divmod(k, len(tuples)) if threads else (0, k)
        text = stack_text.get(sid)
        if text is None:
            text = stack_text[sid] = ";".join(texts[f] for f in tuples[sid]) or NO_PYTHON_FRAMES
        rows.append(text if thread_names[thread] is None else thread_names[thread] + ";" + text)
    series = pd.Series(per_key, index=pd.Index(rows, dtype=object), dtype=np.float64)
    return series.groupby(level=0, sort=True).sum()


def write(recording: "Recording", out: TextIO, weight: str = "samples", lines: bool = True,
          threads: bool = False) -> int:
    """Write collapsed stacks to the text stream ``out``; returns the number of lines."""
    series = stack_weights_by_text(recording, weight, lines=lines, threads=threads)
    if weight != "samples":
        series = series / UNIT_NS
    counts = series.round().astype(np.int64)
    counts = counts[counts > 0]
    out.writelines("%s %d\n" % (text, count) for text, count in zip(counts.index, counts.to_numpy()))
    return len(counts)
