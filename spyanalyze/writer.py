"""Write a Recording back to a .spy file (what ``spyanalyze filter`` produces).

Everything goes through ``spyformat.SpyWriter``, the one codec: the header, PROCESS and
THREAD records and trailer are copied as recorded (the trailer still describes the recorder's
run, so ``info`` can compare it with what is left); only the frames and stacks the remaining
samples use are re-interned, with fresh ids; the frame that stands for "no Python frames" is
written back as what the format says for it, an empty stack.  Wall weights are not stored (the
format has no column for them): a reader derives them again from the sample times, and
``sample_weights`` charges a thread's last sample, and any sample before a gap longer than
``MAX_GAP_INTERVALS`` (say one left by filtering), one interval.

The codec's writer takes one sample per call, so this is the one place the analyser loops per
sample; it runs at roughly a million samples per second or two.
"""

from typing import TYPE_CHECKING, BinaryIO, Dict

import numpy as np

from spyformat import Interner, SpyWriter
from spyanalyze import frames as frame_rules

if TYPE_CHECKING:
    from spyanalyze.recording import Recording

#: Header fields the writer sets itself.
_OWN_FIELDS = ("format", "codec")


def write(recording: "Recording", out: BinaryIO) -> int:
    """Write ``recording`` to the binary stream ``out``; returns the number of samples."""
    writer = SpyWriter(out)
    interned = Interner(writer)
    writer.write_header({k: v for k, v in recording.header.items() if k not in _OWN_FIELDS})
    samples = recording.samples
    pids = set(np.unique(samples["pid"].to_numpy()).tolist())
    pairs = set(map(tuple, samples[["pid", "tid"]].drop_duplicates().to_numpy().tolist()))
    for record in recording.processes.to_dict("records"):
        if record.get("pid") in pids:
            writer.process(**_clean(record))
    for record in recording.threads.to_dict("records"):
        if (record.get("pid"), record.get("tid")) in pairs:
            writer.thread(**_clean(record))

    stack_column = samples["stack"].to_numpy()
    used = np.flatnonzero(np.bincount(stack_column, minlength=len(recording.stack_table)))
    frames = recording.frames
    no_python = recording.no_python_frame
    frame_ids: Dict[int, int] = {}
    new_stack = np.zeros(len(recording.stack_table), dtype=np.int64)
    for sid in used.tolist():
        ids = []
        for fid in recording.stack_table.tuples[sid]:
            if fid == no_python:
                continue
            new = frame_ids.get(fid)
            if new is None:
                row = frames.iloc[fid]
                new = frame_ids[fid] = interned.frame_id(row["file"], row["name"], row["qualname"],
                                                       int(row["line"]), int(row["column"]),
                                                       frame_rules.format_kind(row["kind"]),
                                                       row["source"])
            ids.append(new)
        new_stack[sid] = interned.stack_id(tuple(ids))
    columns = (samples["t"].to_numpy(), samples["pid"].to_numpy(), samples["tid"].to_numpy(),
               new_stack[stack_column], samples["cpu_delta"].to_numpy(), samples["rss"].to_numpy(),
               samples["flags"].to_numpy(), _string_ids(interned, samples["syscall"]),
               _string_ids(interned, samples["wchan"]))
    sample = writer.sample
    for row in zip(*(column.tolist() for column in columns)):
        sample(*row)
    if recording.trailer:
        writer.close(recording.trailer)
    else:
        writer.flush()  # the input had no trailer (its recorder was killed): neither has this
    return len(samples)


def _clean(record):
    """A table row back to a record: drop the None/NaN that stand for absent fields."""
    result = {}
    for key, value in record.items():
        if value is None or (isinstance(value, float) and value != value):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # a column with absent values is float in pandas; records' are ints
        result[key] = value
    return result


def _string_ids(interned, column):
    """A categorical column of names (NaN: none) as 1 + their string ids (0: none)."""
    codes = column.cat.codes.to_numpy()
    ids = np.asarray([interned.string_id(name) + 1 for name in column.cat.categories] + [0],
                     dtype=np.int64)
    return ids[codes]          # code -1 (none) takes the last entry, 0
