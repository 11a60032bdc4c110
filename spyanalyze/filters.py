"""Filters: pure functions ``Recording -> Recording``.  None mutates its input; each returns a
new Recording that shares the frames table and records a description of itself in ``steps``.

Sample filters keep a subset of rows (``processes``, ``threads``, ``window``, ``idle``, ``gil``,
``include``, ``exclude``).  Stack filters rewrite the distinct stacks, once each, and remap the
samples' stack column in one numpy step (``focus`` cuts every stack to start at a matching
frame; ``prune`` hides matching frames, so their time is charged to their caller).

Frames are selected with one small pattern language (``select_frames``):

* ``GLOB``               a function: shell-style glob on the qualified name, the plain name, or
                         ``module:qualname`` (``Handler.*``, ``*parse*``, ``app/db.py:query``);
* ``file:GLOB``          a source file: glob on the module-relative path or the absolute path;
                         a glob also matches trailing path components (``file:db.py`` matches
                         ``app/db.py``);
* ``stdlib``, ``site-packages``, ``user``, ``other``, ``native``, ``kernel`` (or ``kind:NAME``):
  every frame of that kind (the first four are Python code; see ``spyanalyze.frames.KINDS``).

``frame_types`` keeps the frames of the listed types (python, native, kernel) and hides the rest,
as ``prune`` does.

A filter that leaves nothing returns an empty Recording; ``apply(..., allow_empty=False)``
raises ``EmptyResult`` naming the criterion that emptied it (what the CLI uses).
"""

import datetime
import fnmatch
import re
from typing import (Any, Callable, Collection, Dict, Iterable, List, Optional, Set,
                    Tuple, Union)

import numpy as np
import pandas as pd
from spyformat import TASK_FILE

from spyanalyze import frames as frame_rules
from spyanalyze.errors import EmptyResult, UnknownThread
from spyanalyze.tables import TASK_TIDS, StackTable, thread_display_name, thread_keys

#: A ``spyanalyze.recording.Recording``, which imports this module: importing it here, even for
#: the type checker alone, would close an import cycle (tests/test_imports.py).
Recording = Any

#: A time bound: seconds since the origin (a number, or a string with a unit), or a moment.
TimeBound = Union[float, str, "pd.Timestamp", datetime.datetime, np.datetime64, None]

KINDS = frame_rules.KINDS


# ------------------------------------------------------------------------------------------
# Frame selection


def select_frames(recording: Recording, pattern: str) -> np.ndarray:
    """Boolean array over frame ids: which frames the pattern (see module docstring) selects."""
    frames = recording.frames
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("a frame pattern must be a non-empty string")
    kind = pattern[5:] if pattern.startswith("kind:") else pattern
    if kind in KINDS:
        return (frames["kind"] == kind).to_numpy()
    if pattern.startswith("kind:"):
        raise ValueError("unknown frame kind %r (choose %s)" % (kind, ", ".join(KINDS)))
    if pattern.startswith("file:"):
        glob = pattern[5:]
        regex = re.compile(fnmatch.translate(glob))
        tail = re.compile(fnmatch.translate("*/" + glob))
        return np.fromiter(((regex.match(m) or regex.match(f) or tail.match(m) or tail.match(f)) is not None
                            for m, f in zip(frames["module"], frames["file"])), dtype=bool, count=len(frames))
    regex = re.compile(fnmatch.translate(pattern))
    return np.fromiter(((regex.match(q) or regex.match(n) or regex.match(m + ":" + q)) is not None
                        for q, n, m in zip(frames["qualname"], frames["name"], frames["module"])),
                       dtype=bool, count=len(frames))


def stacks_containing(recording: Recording, frame_mask: np.ndarray) -> np.ndarray:
    """Boolean array over stack ids: stacks holding at least one selected frame."""
    stack, frame, _depth = recording.stack_table.long
    hit = np.zeros(len(recording.stack_table), dtype=bool)
    hit[stack[frame_mask[frame]]] = True
    return hit


# ------------------------------------------------------------------------------------------
# Sample filters


def _keep(recording, mask, step):
    return recording.replace(samples=recording.samples[mask], step=step)


def processes(recording: Recording, pids: Collection[int]) -> Recording:
    """Keep the samples of the given process ids."""
    pids = [int(p) for p in _as_list(pids)]
    return _keep(recording, recording.samples["pid"].isin(pids).to_numpy(),
                 "pid " + ",".join(map(str, pids)))


def known_threads(recording: Recording) -> pd.DataFrame:
    """Every thread the recording names: (pid, tid, py_thread_id, display name), as a table."""
    table = recording.threads[["pid", "tid", "py_thread_id", "name"]].copy()
    seen = recording.samples[["pid", "tid"]].drop_duplicates()
    table = seen.merge(table, on=["pid", "tid"], how="outer")
    table["name"] = [thread_display_name(n, int(t)) for n, t in zip(table["name"], table["tid"])]
    return table.reset_index(drop=True)


def tasks_as_threads(recording: Recording) -> Recording:
    """Each sample taken in an asyncio task moved to a thread of its task's, named ``task
    NAME`` (one per process and task name, with a made-up thread id from ``TASK_TIDS`` on), so
    that every per-thread view and export shows a profile per task.  Others stay as they are."""
    frames = recording.frames
    task_of, _ = recording.stack_table.outermost((frames["file"] == TASK_FILE).to_numpy())
    samples = recording.samples.copy()
    task = task_of[samples["stack"].to_numpy()]
    in_task = task >= 0
    if not in_task.any():
        return recording.replace(samples=samples, step="tasks as threads")
    names = frames["qualname"].to_numpy(dtype=object)[task[in_task]]
    keys = pd.MultiIndex.from_arrays([samples["pid"].to_numpy()[in_task], names])
    codes, uniques = keys.factorize()
    tids = samples["tid"].to_numpy().copy()
    tids[in_task] = TASK_TIDS + codes
    labels = ["task %s" % name for _, name in uniques]
    thread = samples["thread"].astype(object).to_numpy().copy()
    thread[in_task] = np.asarray(labels, dtype=object)[codes]
    samples["tid"] = tids
    samples["thread"] = pd.Categorical(thread)
    return recording.replace(samples=samples, step="tasks as threads")


def threads(recording: Recording,
            selectors: Union[str, int, Iterable[Union[str, int]]]) -> Recording:
    """Keep the samples of threads chosen by id (native tid or Python thread id) or by a glob on
    the thread name.  A selector that matches no thread raises ``UnknownThread``."""
    table = known_threads(recording)
    chosen: Set[Tuple[int, int]] = set()
    for selector in _as_list(selectors):
        text = str(selector)
        if text.isdigit():
            number = int(text)
            hit = (table["tid"] == number) | (table["py_thread_id"] == number)
        else:
            regex = re.compile(fnmatch.translate(text))
            hit = table["name"].map(lambda name: regex.match(name) is not None).astype(bool)
        if not hit.any():
            listing = ", ".join("%s (tid %d)" % (n, t) for n, t in zip(table["name"], table["tid"]))
            raise UnknownThread("no thread matches %r; threads in this recording: %s"
                                % (text, listing or "none"))
        chosen.update(zip(table.loc[hit, "pid"].astype(np.int64), table.loc[hit, "tid"].astype(np.int64)))
    key = thread_keys(recording.samples)
    wanted = np.fromiter((p << 32 | t for p, t in chosen), dtype=np.int64, count=len(chosen))
    return _keep(recording, np.isin(key, wanted),
                 "thread " + ",".join(str(s) for s in _as_list(selectors)))


def parse_seconds(value: Union[float, str, None]) -> Optional[float]:
    """Seconds from a number or a string with an optional unit: ``1.5``, ``"1.5s"``, ``"200ms"``."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return pd.to_timedelta(text).total_seconds()
    except (ValueError, TypeError):
        raise ValueError("not a time: %r (write seconds, or a number with a unit such as 200ms)" % value)


def offset_ns(recording: Recording, value: TimeBound) -> Optional[int]:
    """A time bound as ns since the recording's origin (``t``): seconds since the origin (a
    number, or a string with a unit such as ``"200ms"``), or a moment on the wall clock (a
    pandas ``Timestamp``, ``datetime`` or ``numpy.datetime64``, as ``timeline()`` and the
    samples' index hold; a naive one is taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, (pd.Timestamp, datetime.datetime, np.datetime64)):
        moment = pd.Timestamp(value)
        moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
        return moment.value - int(recording.header.get("start_wall_ns") or 0)
    return int(round(parse_seconds(value) * 1e9))  # type: ignore[operator]  # (a value gives seconds)


def window(recording: Recording, start: TimeBound = None, end: TimeBound = None) -> Recording:
    """Keep samples with ``start <= t < end``: each bound in seconds since the recording started
    (the header's monotonic origin; ``spyanalyze info`` shows the span) or a wall-clock moment
    (see ``offset_ns``)."""
    start_ns, end_ns = offset_ns(recording, start), offset_ns(recording, end)
    t = recording.samples["t"].to_numpy()
    mask = np.ones(len(t), dtype=bool)
    if start_ns is not None:
        mask &= t >= start_ns
    if end_ns is not None:
        mask &= t < end_ns
    return _keep(recording, mask, "time %s..%s" % ("" if start_ns is None else "%gs" % (start_ns / 1e9),
                                                    "" if end_ns is None else "%gs" % (end_ns / 1e9)))


def idle(recording: Recording, keep_idle: bool) -> Recording:
    """Keep only idle samples (``keep_idle=True``) or only samples of running threads."""
    mask = recording.samples["idle"].to_numpy()
    return _keep(recording, mask if keep_idle else ~mask, "idle only" if keep_idle else "not idle")


def gil(recording: Recording, held: bool) -> Recording:
    """Keep only samples whose thread held the GIL (``held=True``), or only those that did not."""
    mask = recording.samples["gil"].to_numpy()
    return _keep(recording, mask if held else ~mask, "GIL held" if held else "GIL not held")


def include(recording: Recording, pattern: str) -> Recording:
    """Keep samples whose stack contains a frame the pattern selects."""
    hit = stacks_containing(recording, select_frames(recording, pattern))
    return _keep(recording, hit[recording.samples["stack"].to_numpy()], "include %s" % pattern)


def exclude(recording: Recording, pattern: str) -> Recording:
    """Drop samples whose stack contains a frame the pattern selects."""
    hit = stacks_containing(recording, select_frames(recording, pattern))
    return _keep(recording, ~hit[recording.samples["stack"].to_numpy()], "exclude %s" % pattern)


# ------------------------------------------------------------------------------------------
# Stack filters


def rewrite_stacks(recording: Recording,
                   rewrite: Callable[[Tuple[int, ...]], Optional[Tuple[int, ...]]],
                   step: str) -> Recording:
    """Apply ``rewrite(tuple) -> tuple or None`` to each distinct stack in use (None drops its
    samples), intern the results, and remap the samples in one vectorised step."""
    stack_column = recording.samples["stack"].to_numpy()
    used = np.flatnonzero(np.bincount(stack_column, minlength=len(recording.stack_table)))
    tuples = recording.stack_table.tuples
    mapping = np.full(len(tuples), -1, dtype=np.int64)
    index: Dict[Tuple[int, ...], int]
    new: List[Tuple[int, ...]]
    index, new = {}, []
    for sid in used.tolist():
        result = rewrite(tuples[sid])
        if result is None:
            continue
        nid = index.get(result)
        if nid is None:
            nid = index[result] = len(new)
            new.append(result)
        mapping[sid] = nid
    remapped = mapping[stack_column]
    keep = remapped >= 0
    samples = recording.samples[keep].assign(stack=remapped[keep])
    return recording.replace(samples=samples, stacks=StackTable(new), step=step)


def focus(recording: Recording, pattern: str) -> Recording:
    """Keep samples whose stack passes through a selected frame, and cut each stack so that it
    starts at the outermost selected frame (what the frame's callers did is hidden)."""
    selected = set(np.flatnonzero(select_frames(recording, pattern)).tolist())

    def cut(stack):
        for depth, frame in enumerate(stack):
            if frame in selected:
                return stack[depth:]
        return None
    return rewrite_stacks(recording, cut, "focus %s" % pattern)


def prune(recording: Recording, pattern: str) -> Recording:
    """Hide the selected frames from every stack: a hidden frame's time goes to its nearest
    visible caller (``prune(rec, "stdlib")`` charges ``json.loads`` to the code calling it).
    A stack with nothing visible becomes empty; its samples still count in totals."""
    hidden = set(np.flatnonzero(select_frames(recording, pattern)).tolist())

    def strip(stack):
        return tuple(frame for frame in stack if frame not in hidden)
    return rewrite_stacks(recording, strip, "prune %s" % pattern)


#: The frame types ``frame_types`` takes, and the frame kinds of each.
FRAME_TYPES = {"python": ("user", "stdlib", "site-packages", "other"), "native": ("native",),
               "kernel": ("kernel",)}


def frame_types(recording: Recording, types: Union[str, Iterable[str]]) -> Recording:
    """Keep only the frames of ``types`` (``"python,kernel"`` or a list of names in
    ``FRAME_TYPES``); the others are hidden as ``prune`` hides them."""
    names = [t.strip() for t in (types.split(",") if isinstance(types, str) else types)]
    unknown = [t for t in names if t not in FRAME_TYPES]
    if unknown or not names:
        raise ValueError("unknown frame type %r (choose from %s)"
                         % (unknown[0] if unknown else "", ", ".join(FRAME_TYPES)))
    kept = [kind for t in names for kind in FRAME_TYPES[t]]
    hidden = set(np.flatnonzero(~recording.frames["kind"].isin(kept).to_numpy()).tolist())
    if not hidden:
        return recording

    def strip(stack):
        return tuple(frame for frame in stack if frame not in hidden)
    return rewrite_stacks(recording, strip, "frames %s" % ",".join(names))


# ------------------------------------------------------------------------------------------
# All at once (what the CLI uses)

IDLE_CHOICES = ("include", "exclude", "only")
GIL_CHOICES = ("any", "held", "released")


def apply(recording: Recording, *, pids: Optional[Collection[int]] = None,
          threads: Union[str, int, Iterable[Union[str, int]], None] = None,
          start: TimeBound = None, end: TimeBound = None, idle: Union[bool, str, None] = None,
          gil: Union[bool, str, None] = None, include: Union[str, Iterable[str]] = (),
          exclude: Union[str, Iterable[str]] = (), focus: Optional[str] = None,
          prune: Union[str, Iterable[str]] = (), frames: Union[str, Iterable[str], None] = None,
          allow_empty: bool = True) -> Recording:
    """Apply several filters in a fixed order: processes, threads, time window, idle, GIL,
    include, exclude, focus, prune, frame types (``frames``, see ``frame_types``).

    ``idle`` is ``"include"`` (or None: keep all), ``"exclude"`` (or False) or ``"only"`` (or
    True); ``gil`` is ``"any"`` (or None), ``"held"`` (True) or ``"released"`` (False).
    ``include``, ``exclude`` and ``prune`` take one pattern or a list.  With
    ``allow_empty=False`` a step that leaves no sample raises ``EmptyResult``.
    """
    module = globals()
    steps: List[Tuple[Callable[..., Recording], Tuple[Any, ...]]] = []
    if pids:
        steps.append((module["processes"], (pids,)))
    if threads:
        steps.append((module["threads"], (threads,)))
    if start is not None or end is not None:
        steps.append((window, (start, end)))
    # (a choice given by name, a str, is not a key: it stands for itself)
    idle = {False: "exclude", True: "only", None: "include"}.get(idle, idle)  # type: ignore[arg-type]
    if idle not in IDLE_CHOICES:
        raise ValueError("idle must be one of %s" % ", ".join(IDLE_CHOICES))
    if idle != "include":
        steps.append((module["idle"], (idle == "only",)))
    gil = {True: "held", False: "released", None: "any"}.get(gil, gil)  # type: ignore[arg-type]
    if gil not in GIL_CHOICES:
        raise ValueError("gil must be one of %s" % ", ".join(GIL_CHOICES))
    if gil != "any":
        steps.append((module["gil"], (gil == "held",)))
    steps += [(module["include"], (p,)) for p in _as_list(include)]
    steps += [(module["exclude"], (p,)) for p in _as_list(exclude)]
    if focus:
        steps.append((module["focus"], (focus,)))
    steps += [(module["prune"], (p,)) for p in _as_list(prune)]
    if frames:
        steps.append((frame_types, (frames,)))
    if not allow_empty and recording.empty:
        raise EmptyResult("the recording holds no samples")
    for function, args in steps:
        before = len(recording)
        recording = function(recording, *args)
        if not allow_empty and recording.empty:
            raise EmptyResult("no samples left after filtering by %s (%d samples before it)"
                              % (recording.steps[-1], before))
    return recording


def _as_list(value: Any) -> List[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    return list(value)
