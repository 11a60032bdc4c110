"""The Recording model: a .spy file as pandas DataFrames.

``load(path)`` reads a recording with ``spyformat.read_recording`` (the one codec) and
builds three tables, all vectorised (numpy over whole columns, loops only per unique frame or
stack, never per sample).

Time has one unit in every table of the analyser: **nanoseconds**, as int64 (``t``, ``wall``,
``cpu`` here; the time columns of ``by_function``, ``by_thread`` and ``timeline``), and moments
on the wall clock are UTC ``Timestamp`` values.  Only scalars say seconds (``Recording.duration``).

``samples``  one row per sample, in time order, indexed by ``time`` (a UTC DatetimeIndex of
             the wall-clock moment, so ``rec.samples.resample("100ms")`` works as it is)::

    t          int64   ns since the recording's monotonic origin (header ``start_mono_ns``)
    timestamp  datetime64[ns, UTC]   wall clock: header ``start_wall_ns`` + t (as the index)
    pid, tid   int32   process id, native thread id (int64 in the rare file whose ids do
                       not fit: another profiler's)
    thread     category   the thread's name from its THREAD record ("tid N" when unnamed)
    stack      int32   stack id (index into ``stacks``; int64 beyond 2**31 stacks)
    wall       int64   ns of wall time the sample stands for (see ``sample_weights``)
    ticks      float64 the same in nominal sampling intervals: 1 unless the recorder fell
                       behind after this sample; the ``samples`` weight sums these
    cpu        int64   ns of CPU time the sample stands for (see ``cpu_weights``): the
                       thread's, until its next sample
    cpu_delta  int64   ns of CPU the thread used since its previous sample, as recorded
    rss        int64   the process's resident set size, bytes
    syscall    category   for a thread found asleep: the system call it waited in (``futex``,
                       ``recvfrom``, ``clock_nanosleep``...); NaN when running or unknown
    wchan      category   the kernel function it slept in (``futex_wait_queue``...), likewise
    idle, gil, torn   bool   the SampleFlag bits; ``flags`` keeps the raw byte

``frames``   one row per distinct frame: file, name, qualname, line, column, plus the derived
             ``module`` (module-relative path, see ``module_paths``), ``kind`` (user, stdlib,
             site-packages, other) and ``label`` (see ``spyanalyze.frames.labels``).
``stacks``   one row per distinct stack: ``frames`` (tuple of frame ids, root first), ``depth``
             and ``leaf`` (the innermost frame id, -1 for a stack a filter emptied).

Loading applies ``spyanalyze.frames``: the interpreter's own shim frames are left out of every
stack (their time goes to their caller), and a stack without Python frames is given the single
frame ``<no Python frames>``, so that time shows in every view, export and diff alike.

``rec.leaves()`` gives each sample's innermost frame (function, file, line) without joining
through ``stacks`` and ``frames``.

The format allows the same content under several ids (the writer forgets its interning tables
after a bound); loading maps such duplicates onto one id, so every later groupby can trust ids.
A Recording is never mutated: filters build new ones that share the frames table.
"""

import os
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import numpy as np
import pandas as pd

import spyformat
from spyformat import SampleFlag
from spyformat.chunks import MAGIC as SPY_MAGIC

from spyanalyze import filters, peers, views
from spyanalyze import frames as frame_rules
from spyanalyze.errors import CorruptRecording, IncompleteRecording, SpyError, UnreadableFile
from spyanalyze.paths import module_paths
from spyanalyze.peers.pyspy import NotCollapsed
from spyanalyze.tables import (StackTable, check_weight, cpu_weights, narrowest_id, sample_weights,
                               thread_display_name)


class Recording:
    """A loaded (or filtered) recording.  Build one with ``spyanalyze.load``.

    Attributes: ``samples``, ``frames``, ``stacks`` (DataFrames described in the module
    docstring), ``threads`` and ``processes`` (the THREAD and PROCESS records as tables),
    ``header`` and ``trailer`` (dicts as recorded), ``source`` (the path loaded), ``lost_bytes``
    (size of a torn tail that was dropped), ``lost`` (a sentence per way the file lost data).
    Views and filters are methods that delegate to ``spyanalyze.views`` and
    ``spyanalyze.filters``.
    """

    def __init__(self, samples: pd.DataFrame, frames: pd.DataFrame,
                 stacks: Union[StackTable, Iterable[Tuple[int, ...]]], threads: pd.DataFrame,
                 processes: pd.DataFrame, header: Dict[str, Any],
                 trailer: Optional[Dict[str, Any]], meta: Dict[str, Any],
                 steps: Iterable[str] = (),
                 codes: Optional[Dict[str, Tuple[np.ndarray, pd.DataFrame]]] = None):
        self.samples = samples
        self.frames = frames
        self._stacks = stacks if isinstance(stacks, StackTable) else StackTable(stacks)
        self.threads = threads
        self.processes = processes
        self.header = header
        self.trailer = trailer
        self.meta = meta
        #: Human-readable descriptions of the filters that produced this recording.
        self.steps = tuple(steps)
        self._codes = {} if codes is None else codes   # frame codings: shared with derived recordings

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_data(cls, data: spyformat.RecordingData, source: Optional[str] = None,
                  all_native: bool = False) -> "Recording":
        """Build a Recording from ``spyformat.RecordingData`` (the codec's neutral result);
        ``all_native``: see ``load``."""
        if not data.header:
            raise CorruptRecording("the recording has no HEADER record")
        frame_map, frames, format_kinds = _canonical_frames(data)
        frame_map, frames, format_kinds = _drop_internal_frames(frame_map, frames, format_kinds)
        stack_map, stacks = _canonical_stacks(data.stacks, frame_map)
        if any(not stack for stack in stacks):
            stacks = [stack or (len(frames),) for stack in stacks]
            frames = _with_no_python_frame(frames)
            format_kinds = np.append(format_kinds, spyformat.FrameKind.PYTHON)
        threads = _records_table(data.threads.values(), ["pid", "tid", "py_thread_id", "name", "start_ns",
                                                          "end_ns"], ("pid", "tid"))
        processes = _records_table(data.processes.values(), ["pid"], ("pid",))
        root = data.header.get("cwd") or next(
            (p.get("cwd") for p in data.processes.values() if p.get("cwd")), None)
        modules, kinds = module_paths(frames["file"].tolist(), root)
        modules, kinds = frame_rules.with_format_kinds(modules, kinds, format_kinds,
                                                       frames["file"].tolist())
        frames["module"] = pd.Series(modules, dtype=object)
        frames["kind"] = pd.Categorical(kinds, categories=frame_rules.KINDS)
        frames["label"] = pd.Series(frame_rules.labels(frames["qualname"], frames["module"], frames["line"],
                                                       frames["source"]), dtype=object)
        frames = frames.rename_axis("frame")
        if not all_native and (frames["kind"] == "native").any():
            stack_map, stacks = _without_interpreter_plumbing(stack_map, stacks, frames)
        samples = _samples_table(data, stack_map, threads)
        meta = {"source": source, "lost_bytes": data.lost_bytes, "version": data.version,
                "unknown_chunks": data.unknown_chunks, "chunks": data.chunk_count,
                "lost": tuple(data.lost)}
        return cls(samples, frames, StackTable(stacks), threads, processes, dict(data.header),
                   data.trailer, meta)

    def replace(self, samples: Optional[pd.DataFrame] = None, stacks: Optional[StackTable] = None,
                step: Optional[str] = None) -> "Recording":
        """A new Recording sharing this one's frames and metadata (how filters build results)."""
        return Recording(self.samples if samples is None else samples, self.frames,
                         self._stacks if stacks is None else stacks, self.threads, self.processes,
                         self.header, self.trailer, self.meta,
                         self.steps + ((step,) if step else ()), self._codes)

    # -- basic facts ---------------------------------------------------------------------

    @property
    def stacks(self) -> pd.DataFrame:
        return self._stacks.frame

    @property
    def stack_table(self) -> StackTable:
        return self._stacks

    @property
    def source(self) -> Optional[str]:
        return self.meta.get("source")

    @property
    def lost_bytes(self) -> int:
        return self.meta.get("lost_bytes", 0)

    @property
    def lost(self) -> Tuple[str, ...]:
        """Sentences on the data the file lost (a torn tail, no trailer); empty when whole."""
        return self.meta.get("lost", ())

    @property
    def empty(self) -> bool:
        return len(self.samples) == 0

    @property
    def interval_ns(self) -> int:
        return int(self.header.get("interval_ns") or 0)

    @property
    def duration(self) -> float:
        """Seconds between the first and last sample (plus one interval), 0 when empty."""
        if self.empty:
            return 0.0
        t = self.samples["t"].to_numpy()
        return float(t.max() - t.min() + self.interval_ns) / 1e9

    @property
    def no_python_frame(self) -> Optional[int]:
        """The frame id standing for "no Python frames", or None when no sample needs it."""
        hit = np.flatnonzero(((self.frames["file"] == frame_rules.NO_PYTHON_FRAMES)
                              & (self.frames["qualname"] == frame_rules.NO_PYTHON_FRAMES)).to_numpy())
        return int(hit[0]) if len(hit) else None

    def __len__(self) -> int:
        return len(self.samples)

    def leaves(self) -> pd.DataFrame:
        """Each sample's innermost frame, indexed like ``samples``: ``frame`` id, ``qualname``,
        ``module``, ``line``, ``file``, ``kind`` and ``label`` (missing where a filter emptied
        the stack)."""
        leaf = self._stacks.leaf[self.samples["stack"].to_numpy()]
        table = self.frames[["qualname", "module", "line", "file", "kind", "label"]].reindex(leaf)
        if (leaf < 0).any():
            table["line"] = table["line"].astype("Int64")
        table.index = self.samples.index
        table.insert(0, "frame", leaf)
        return table

    def __repr__(self) -> str:
        return "<Recording %s: %d samples, %d threads, %.2fs%s>" % (
            self.source or "(in memory)", len(self.samples),
            self.samples[["pid", "tid"]].drop_duplicates().shape[0] if len(self.samples) else 0,
            self.duration, (", filtered: " + "; ".join(self.steps)) if self.steps else "")

    # -- per-stack and per-frame helpers used by views, filters and exports ---------------

    def stack_weights(self, weight: str = "samples") -> np.ndarray:
        """Total weight per stack id: samples (in ticks, see ``sample_weights``), or wall /
        CPU nanoseconds."""
        check_weight(weight)
        stack = self.samples["stack"].to_numpy()
        column = "ticks" if weight == "samples" else weight
        return np.bincount(stack, weights=self.samples[column].to_numpy(),
                           minlength=len(self._stacks))

    def frame_codes(self, by: str) -> Tuple[np.ndarray, pd.DataFrame]:
        """Code every frame by a grouping key; returns (codes per frame, keys table).

        ``by`` is ``function`` (module + qualname: how recordings are matched across
        machines and commits), ``line`` (module + qualname + line + the source file of a
        native frame's line), ``file`` (module) or ``frame`` (every distinct frame).
        """
        if by not in self._codes:
            line = ["module", "qualname", "line", "source"]
            columns = {"function": ["module", "qualname"], "line": line, "file": ["module"],
                       "frame": None}
            if by not in columns:
                raise ValueError("unknown grouping %r (choose function, line, file or frame)" % by)
            if columns[by] is None:
                codes = np.arange(len(self.frames), dtype=np.int64)
                keys = self.frames[line].reset_index(drop=True)
            else:
                keys_index = pd.MultiIndex.from_frame(self.frames[columns[by]])
                codes, uniques = keys_index.factorize()
                keys = uniques.to_frame(index=False, name=columns[by])
                codes = codes.astype(np.int64)
            self._codes[by] = (codes, keys)
        return self._codes[by]

    # -- views and filters (see views.py, filters.py) -------------------------------------

    def by_function(self, weight: str = "samples") -> pd.DataFrame:
        return views.by_function(self, weight)

    def by_line(self, weight: str = "samples") -> pd.DataFrame:
        return views.by_line(self, weight)

    def by_file(self, weight: str = "samples") -> pd.DataFrame:
        return views.by_file(self, weight)

    def by_thread(self) -> pd.DataFrame:
        return views.by_thread(self)

    def by_process(self) -> pd.DataFrame:
        return views.by_process(self)

    def by_cause(self, weight: str = "wall") -> pd.DataFrame:
        return views.by_cause(self, weight)

    def by_task(self, weight: str = "samples") -> pd.DataFrame:
        return views.by_task(self, weight)

    def tasks_as_threads(self) -> "Recording":
        return filters.tasks_as_threads(self)

    def timeline(self, freq: str = "1s") -> pd.DataFrame:
        return views.timeline(self, freq)

    def filter(self, **criteria: Any) -> "Recording":
        """Apply ``spyanalyze.filters.apply`` criteria; returns a new Recording."""
        return filters.apply(self, **criteria)

    # -- pictures and notebooks (see plot.py, summary.py) ----------------------------------

    def plot_timeline(self, **options: Any) -> Any:
        """A matplotlib Figure of CPU per thread and memory over time (``spyanalyze.plot.timeline``)."""
        from spyanalyze import plot       # matplotlib is optional: imported only to draw
        return plot.timeline(self, **options)

    def plot_threads(self, **options: Any) -> Any:
        """A matplotlib Figure of time per thread (``spyanalyze.plot.threads``)."""
        from spyanalyze import plot
        return plot.threads(self, **options)

    def _repr_html_(self) -> str:
        from spyanalyze import summary
        return summary.to_html(self)


def load(path: Union[str, "os.PathLike[str]"], strict: bool = False,
         max_memory: Optional[int] = None, all_native: bool = False) -> Recording:
    """Load a .spy recording (``-`` reads standard input) into a ``Recording``; Austin's and
    py-spy's files load too (``spyanalyze.peers``), told by their first bytes.

    A recording that lost data (a torn tail, no trailer) loads with ``Recording.lost`` saying
    so, or raises ``IncompleteRecording`` when ``strict``.  ``max_memory`` is the reader's
    budget in bytes (see ``spyformat.limits``): a file needing more is a ``CorruptRecording``.
    Native frames (``spyrec --native``) show as ``py-spy --native`` shows them: stacks start
    at their outermost Python frame, and the interpreter's call plumbing between frames is
    left out (``spyanalyze.frames.without_interpreter_plumbing``); ``all_native`` keeps every
    native frame recorded.
    """
    path = os.fspath(path)
    try:
        stream = spyformat.open_source(path)
        try:
            data = _read_any(stream, max_memory)
        finally:
            if path != "-":
                stream.close()
        if strict and data.lost:
            raise IncompleteRecording("%s lost data: %s" % (path, "; ".join(data.lost)))
        return Recording.from_data(data, source="<stdin>" if path == "-" else path,
                                   all_native=all_native)
    except IsADirectoryError:
        raise UnreadableFile("%s: is a directory, not a recording" % path)
    except FileNotFoundError:
        raise UnreadableFile("%s: no such file" % path)
    except OSError as exc:
        raise UnreadableFile("%s: %s" % (path, exc.strerror or exc))
    except SpyError:
        raise
    except Exception as exc:  # noqa: BLE001 - a file is untrusted input: any flaw (bytes, fields
        # of the wrong type or out of range) is the file's
        raise CorruptRecording("%s: malformed recording (%s)" % (path, type(exc).__name__)) from None


def _read_any(stream, max_memory):
    """A .spy recording, or another profiler's file (``spyanalyze.peers``) told by its first
    bytes; a file that is neither says it is not a .spy recording."""
    stream = peers.HeadStream(stream, peers.HEAD_BYTES)
    head = stream.head
    if not head or head[:len(SPY_MAGIC)] == SPY_MAGIC[:len(head)]:
        return spyformat.read_recording(stream, max_memory=max_memory)
    kind = peers.sniff(head)
    if kind is None:
        raise CorruptRecording("not a .spy recording (bad magic), nor Austin, py-spy or speedscope "
                               "output", 0)
    try:
        return peers.read(kind, stream, max_memory)
    except NotCollapsed as exc:
        raise CorruptRecording("not a .spy recording (bad magic), nor collapsed stacks: %s"
                               % exc.reason, exc.offset) from None


# ------------------------------------------------------------------------------------------
# Building the tables


def _canonical_frames(data):
    """Resolve string ids and fold frames with identical content onto one id."""
    strings = data.strings
    raw = data.frames
    kinds = raw.get("kind") or [spyformat.FrameKind.PYTHON] * len(raw["file"])
    sources = raw.get("source") or [0] * len(raw["file"])   # 1 + a string id, 0: none
    keys = list(zip((strings[i] for i in raw["file"]), (strings[i] for i in raw["name"]),
                    (strings[i] for i in raw["qualname"]), raw["line"], raw["column"], kinds,
                    (strings[i - 1] if i else "" for i in sources)))
    frame_map, unique = _fold(keys)
    file, name, qualname, line, column, kind, source = (list(col) for col in zip(*unique)) if unique \
        else ([], [], [], [], [], [], [])
    frames = pd.DataFrame({"file": pd.Series(file, dtype=object), "name": pd.Series(name, dtype=object),
                           "qualname": pd.Series(qualname, dtype=object),
                           "line": np.asarray(line, dtype=np.int64),
                           "column": np.asarray(column, dtype=np.int64),
                           "source": pd.Series(source, dtype=object)})
    return frame_map, frames, np.asarray(kind, dtype=np.int64)


def _drop_internal_frames(frame_map, frames, format_kinds):
    """Leave out the interpreter's shim frames (``spyanalyze.frames.interpreter_internal``):
    returns the frame map with -1 for them, and the frames table and kinds without them."""
    internal = frame_rules.interpreter_internal(frames["file"], frames["name"], frames["line"])
    internal &= format_kinds == spyformat.FrameKind.PYTHON
    if not internal.any():
        return frame_map, frames, format_kinds
    renumber = np.cumsum(~internal) - 1
    renumber[internal] = -1
    return renumber[frame_map], frames[~internal].reset_index(drop=True), format_kinds[~internal]


def _with_no_python_frame(frames):
    """The frames table plus, as its last row, the frame standing for no Python frames."""
    name = frame_rules.NO_PYTHON_FRAMES
    row = pd.DataFrame({"file": pd.Series([name], dtype=object), "name": pd.Series([name], dtype=object),
                        "qualname": pd.Series([name], dtype=object), "line": np.zeros(1, dtype=np.int64),
                        "column": np.full(1, -1, dtype=np.int64), "source": pd.Series([""], dtype=object)})
    return pd.concat([frames, row], ignore_index=True)


def _canonical_stacks(stacks, frame_map):
    """Remap frame ids (dropping frames mapped to -1) and fold identical stacks; returns
    (old id -> new id, new tuples)."""
    if len(frame_map) and not np.array_equal(frame_map, np.arange(len(frame_map))):
        table = frame_map.tolist()
        stacks = [tuple(t for t in (table[f] for f in stack) if t >= 0) for stack in stacks]
    if len(set(stacks)) == len(stacks):
        return np.arange(len(stacks), dtype=np.int64), list(stacks)
    return _fold(stacks)


def _without_interpreter_plumbing(stack_map, stacks, frames):
    """The stacks as views show them (``frame_rules.without_interpreter_plumbing``), equal
    ones folded: (old id -> new id, new tuples)."""
    native = (frames["kind"].isin(("native", "kernel"))
              | frames["qualname"].isin(frame_rules.PSEUDO_FRAMES)).to_numpy()
    plumbing, unnamed = frame_rules.interpreter_plumbing(frames["name"], frames["module"],
                                                         frames["kind"])
    shown = [frame_rules.without_interpreter_plumbing(stack, native, plumbing, unnamed)
             for stack in stacks]
    mapping, unique = _fold(shown)
    return mapping[stack_map], unique


def _fold(items):
    """Give equal items one id: (old position -> new id as an array, the distinct items)."""
    index = {}
    mapping = np.empty(len(items), dtype=np.int64)
    unique = []
    for position, item in enumerate(items):
        new_id = index.get(item)
        if new_id is None:
            new_id = index[item] = len(unique)
            unique.append(item)
        mapping[position] = new_id
    return mapping, unique


def _records_table(records, columns, required):
    """PROCESS or THREAD records as a table, ``columns`` first.  Every cell keeps its value
    exactly (object columns, None where a record lacks the key): a float column would round
    ids and times above 2^53, and ``spyanalyze filter`` writes these cells back."""
    records = list(records)
    columns = columns + sorted({key for record in records for key in record} - set(columns))
    table = pd.DataFrame({column: pd.Series([record.get(column) for record in records], dtype=object)
                          for column in columns})
    for column in required:            # always present (the reader checks): plain integers
        table[column] = table[column].astype(np.int64)
    return table


def _string_category(ids, strings):
    """A column of 1 + string ids (0: none) as a categorical of those strings (NaN: none)."""
    present, codes = np.unique(ids, return_inverse=True)
    names = [strings[int(i) - 1] for i in present if i]
    codes = codes.astype(np.int64) - (1 if len(present) and present[0] == 0 else 0)
    # the same string under two ids (the writer forgot its table): one category
    categories = list(dict.fromkeys(names))
    position = np.asarray([categories.index(name) for name in names] or [0], dtype=np.int64)
    codes = np.where(codes >= 0, position[np.maximum(codes, 0)], -1)
    return pd.Categorical.from_codes(codes, categories=categories)


def _samples_table(data, stack_map, threads):
    columns = data.samples
    n = data.sample_count
    t = columns["t"].astype(np.int64, copy=False)
    pid = columns["pid"].astype(np.int64)
    tid = columns["tid"].astype(np.int64)
    if n and not pid.any() and isinstance(data.header.get("pid"), int):
        pid[:] = data.header["pid"]          # a recording without the pid column: one process
    stack = stack_map[columns["stack"].astype(np.int64)] if n else np.zeros(0, dtype=np.int64)
    cpu = columns["cpu"].astype(np.int64, copy=False)
    rss = columns["rss"].astype(np.int64, copy=False)
    flags = columns["flags"].astype(np.uint8, copy=False)
    syscall = columns["syscall"].astype(np.int64, copy=False)
    wchan = columns["wchan"].astype(np.int64, copy=False)
    if n > 1 and (np.diff(t) < 0).any():       # keep every table in time order
        order = np.argsort(t, kind="stable")
        t, pid, tid, stack, cpu, rss, flags, syscall, wchan = (
            a[order] for a in (t, pid, tid, stack, cpu, rss, flags, syscall, wchan))
    key = (pid << 32) | tid
    codes, uniques = pd.factorize(key)
    names = {(int(row.pid), int(row.tid)): row.name for row in threads.itertuples()}
    display = [thread_display_name(names.get((int(k) >> 32, int(k) & 0xFFFFFFFF)), int(k) & 0xFFFFFFFF)
               for k in uniques]
    categories = list(dict.fromkeys(display))
    position = {name: i for i, name in enumerate(categories)}
    name_codes = np.asarray([position[name] for name in display], dtype=np.int64)
    thread = pd.Categorical.from_codes(name_codes[codes] if n else np.zeros(0, dtype=np.int64),
                                       categories=categories)
    wall, ticks = sample_weights(t, key, data.header.get("interval_ns"))
    idle = (flags & SampleFlag.IDLE) != 0
    gil = (flags & SampleFlag.GIL) != 0
    origin = int(data.header.get("start_wall_ns") or 0)
    timestamp = pd.DatetimeIndex((t + origin).view("datetime64[ns]")).tz_localize("UTC")
    pid, tid, stack = narrowest_id(pid), narrowest_id(tid), narrowest_id(stack)
    return pd.DataFrame({
        "t": t, "timestamp": timestamp, "pid": pid, "tid": tid, "thread": thread, "stack": stack,
        "wall": wall, "ticks": ticks, "cpu": cpu_weights(codes, cpu, ~idle), "cpu_delta": cpu,
        "rss": rss, "syscall": _string_category(syscall, data.strings),
        "wchan": _string_category(wchan, data.strings), "idle": idle, "gil": gil,
        "torn": (flags & SampleFlag.TORN) != 0, "flags": flags,
    }, index=timestamp.rename("time"), copy=False)   # one block per column: no consolidating copy
