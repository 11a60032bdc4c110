"""The Recording model: a .spy file as pandas DataFrames.

``load(path)`` reads a recording with ``spyrec.spyformat.read_recording`` (the one codec) and
builds three tables, all vectorised (numpy over whole columns, loops only per unique frame or
stack, never per sample).

Time has one unit in every table of the analyser: **nanoseconds**, as int64 (``t``, ``wall``,
``cpu`` here; the time columns of ``by_function``, ``by_thread`` and ``timeline``), and moments
on the wall clock are UTC ``Timestamp`` values.  Only scalars say seconds (``Recording.duration``).

``samples``  one row per sample, in time order, indexed by ``time`` (a UTC DatetimeIndex of
             the wall-clock moment, so ``rec.samples.resample("100ms")`` works as it is)::

    t          int64   ns since the recording's monotonic origin (header ``start_mono_ns``)
    timestamp  datetime64[ns, UTC]   wall clock: header ``start_wall_ns`` + t (as the index)
    pid, tid   int64   process id, native thread id
    thread     category   the thread's name from its THREAD record ("tid N" when unnamed)
    stack      int64   stack id (index into ``stacks``)
    wall       int64   ns of wall time the sample stands for (see ``sample_weights``)
    ticks      float64 the same in nominal sampling intervals: 1 unless the recorder fell
                       behind after this sample; the ``samples`` weight sums these
    cpu        int64   ns of CPU the thread used since its previous sample
    rss        int64   the process's resident set size, bytes
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

import functools
import os
import re

import numpy as np
import pandas as pd

from spyrec import spyformat
from spyrec.spyformat import SampleFlag

from spyanalyze import frames as frame_rules
from spyanalyze.errors import CorruptRecording, IncompleteRecording, SpyError, UnreadableFile

#: What a view or an export can weigh a sample by: one each, wall time, or CPU time.
WEIGHTS = ("samples", "wall", "cpu")

#: A gap between two samples of a thread longer than this many nominal intervals is not
#: attributed to the sample before it (see ``sample_weights``).
MAX_GAP_INTERVALS = 20

_LIBRARY = re.compile(r"(?:^|/)(?:site|dist)-packages/")
_STDLIB = re.compile(r"(?:^|/)(?:lib(?:64)?/(?:pypy|python)\d+(?:\.\d+)?[a-z]*|Lib)/")


def module_paths(files, root=None):
    """Map absolute source paths to module-relative paths and a kind, so recordings made on
    other machines, in other checkouts or virtualenvs line up.  The rule, in order:

    1. ``<frozen ...>``, ``<string>`` and other pseudo-files stay as they are (frozen modules
       are kind ``stdlib``, the others ``other``);
    2. everything up to and including the last ``site-packages/`` or ``dist-packages/`` is
       dropped (kind ``site-packages``): ``/venv/lib/python3.11/site-packages/numpy/core/x.py``
       becomes ``numpy/core/x.py``;
    3. everything up to and including the standard library directory (``lib/pythonX.Y/``,
       ``lib64/...``, ``Lib/`` on Windows) is dropped (kind ``stdlib``): ``json/decoder.py``;
    4. any other file (kind ``user``) is made relative to ``root`` when it lies under it; the
       root is the target's working directory when the recording names one (a ``cwd`` field in
       the header or PROCESS record) and the file lies under it, else the common directory of
       all the recording's other user files (so a single script reads as its base name);
    5. a relative path is kept, normalised.

    Returns two lists (module paths, kinds) parallel to ``files``.
    """
    normalised = [f.replace("\\", "/") for f in files]
    if root and root.rstrip("/") == "":
        root = None                      # a service started in / says nothing about its code

    def under(path, directory):
        return (path + "/").startswith(directory.rstrip("/") + "/")
    user_dirs = [os.path.dirname(f) for f in normalised
                 if f.startswith("/") and not _LIBRARY.search(f) and not _STDLIB.search(f)
                 and not (root and under(f, root))]
    common = None
    if user_dirs:
        try:
            common = os.path.commonpath(user_dirs)
        except ValueError:
            common = None
    modules, kinds = [], []
    for path in normalised:
        if path.startswith("<"):
            modules.append(path)
            kinds.append("stdlib" if path.startswith("<frozen") else "other")
            continue
        library = list(_LIBRARY.finditer(path))
        if library:
            modules.append(path[library[-1].end():])
            kinds.append("site-packages")
            continue
        stdlib = list(_STDLIB.finditer(path))
        if stdlib:
            modules.append(path[stdlib[-1].end():])
            kinds.append("stdlib")
            continue
        if root and path.startswith("/") and under(path, root):
            path = os.path.relpath(path, root)
        elif common and path.startswith("/") and under(path, common):
            path = os.path.relpath(path, common)
        elif not path.startswith("/"):
            path = os.path.normpath(path)
        modules.append(path.replace("\\", "/"))
        kinds.append("user")
    return modules, kinds


class StackTable:
    """The distinct stacks of a recording plus the derived arrays views need.

    ``tuples[i]`` is stack i as frame ids, root first.  The long form (one row per (stack,
    depth)) is what turns per-stack sample counts into per-function counts without a loop per
    sample: count samples per stack, then spread each stack's count over its frames.
    """

    def __init__(self, tuples):
        self.tuples = list(tuples)
        self._pairs = {}

    def __len__(self):
        return len(self.tuples)

    @functools.cached_property
    def lengths(self):
        return np.fromiter(map(len, self.tuples), dtype=np.int64, count=len(self.tuples))

    @functools.cached_property
    def long(self):
        """(stack, frame, depth) arrays, one entry per frame of every stack."""
        lengths = self.lengths
        total = int(lengths.sum())
        stack = np.repeat(np.arange(len(self.tuples), dtype=np.int64), lengths)
        frame = np.fromiter((f for s in self.tuples for f in s), dtype=np.int64, count=total)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        depth = np.arange(total, dtype=np.int64) - starts
        return stack, frame, depth

    @functools.cached_property
    def leaf(self):
        """The innermost frame id of each stack, -1 when the stack is empty."""
        leaf = np.full(len(self.tuples), -1, dtype=np.int64)
        stack, frame, _depth = self.long
        if len(frame):
            ends = np.cumsum(self.lengths) - 1
            nonempty = self.lengths > 0
            leaf[nonempty] = frame[ends[nonempty]]
        return leaf

    def pairs(self, key, codes):
        """Distinct (stack, code) pairs for a per-frame coding: a recursive function counts once
        per stack in its total.  Cached per coding name."""
        if key not in self._pairs:
            stack, frame, _depth = self.long
            n = int(codes.max()) + 1 if len(codes) else 1
            combined = np.unique(stack * n + codes[frame])
            self._pairs[key] = (combined // n, combined % n)
        return self._pairs[key]

    @functools.cached_property
    def frame(self):
        return pd.DataFrame({"frames": pd.Series(self.tuples, dtype=object),
                             "depth": self.lengths, "leaf": self.leaf}).rename_axis("stack")


class Recording:
    """A loaded (or filtered) recording.  Build one with ``spyanalyze.load``.

    Attributes: ``samples``, ``frames``, ``stacks`` (DataFrames described in the module
    docstring), ``threads`` and ``processes`` (the THREAD and PROCESS records as tables),
    ``header`` and ``trailer`` (dicts as recorded), ``source`` (the path loaded), ``lost_bytes``
    (size of a torn tail that was dropped), ``lost`` (a sentence per way the file lost data).  Views and filters are methods that delegate to
    ``spyanalyze.views`` and ``spyanalyze.filters``.
    """

    def __init__(self, samples, frames, stacks, threads, processes, header, trailer, meta,
                 steps=(), codes=None):
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
    def from_data(cls, data, source=None):
        """Build a Recording from ``spyformat.RecordingData`` (the codec's neutral result)."""
        if not data.header:
            raise CorruptRecording("the recording has no HEADER record")
        frame_map, frames = _canonical_frames(data)
        frame_map, frames = _drop_internal_frames(frame_map, frames)
        stack_map, stacks = _canonical_stacks(data.stacks, frame_map)
        if any(not stack for stack in stacks):
            stacks = [stack or (len(frames),) for stack in stacks]
            frames = _with_no_python_frame(frames)
        threads = _records_table(data.threads.values(), ["pid", "tid", "py_thread_id", "name", "start_ns",
                                                          "end_ns"], ("pid", "tid"))
        processes = _records_table(data.processes.values(), ["pid"], ("pid",))
        root = data.header.get("cwd") or next(
            (p.get("cwd") for p in data.processes.values() if p.get("cwd")), None)
        modules, kinds = module_paths(frames["file"].tolist(), root)
        frames["module"] = pd.Series(modules, dtype=object)
        frames["kind"] = pd.Categorical(kinds, categories=["user", "stdlib", "site-packages", "other"])
        frames["label"] = pd.Series(frame_rules.labels(frames["qualname"], frames["module"], frames["line"]),
                                    dtype=object)
        frames = frames.rename_axis("frame")
        samples = _samples_table(data, stack_map, threads)
        meta = {"source": source, "lost_bytes": data.lost_bytes, "version": data.version,
                "unknown_chunks": data.unknown_chunks, "chunks": data.chunk_count,
                "lost": tuple(data.lost)}
        return cls(samples, frames, StackTable(stacks), threads, processes, dict(data.header),
                   data.trailer, meta)

    def replace(self, samples=None, stacks=None, step=None):
        """A new Recording sharing this one's frames and metadata (how filters build results)."""
        return Recording(self.samples if samples is None else samples, self.frames,
                         self._stacks if stacks is None else stacks, self.threads, self.processes,
                         self.header, self.trailer, self.meta,
                         self.steps + ((step,) if step else ()), self._codes)

    # -- basic facts ---------------------------------------------------------------------

    @property
    def stacks(self):
        return self._stacks.frame

    @property
    def stack_table(self):
        return self._stacks

    @property
    def source(self):
        return self.meta.get("source")

    @property
    def lost_bytes(self):
        return self.meta.get("lost_bytes", 0)

    @property
    def lost(self):
        """Sentences on the data the file lost (a torn tail, no trailer); empty when whole."""
        return self.meta.get("lost", ())

    @property
    def empty(self):
        return len(self.samples) == 0

    @property
    def interval_ns(self):
        return int(self.header.get("interval_ns") or 0)

    @property
    def duration(self):
        """Seconds between the first and last sample (plus one interval), 0 when empty."""
        if self.empty:
            return 0.0
        t = self.samples["t"].to_numpy()
        return float(t[-1] - t[0] + self.interval_ns) / 1e9

    @property
    def no_python_frame(self):
        """The frame id standing for "no Python frames", or None when no sample needs it."""
        hit = np.flatnonzero(((self.frames["file"] == frame_rules.NO_PYTHON_FRAMES)
                              & (self.frames["qualname"] == frame_rules.NO_PYTHON_FRAMES)).to_numpy())
        return int(hit[0]) if len(hit) else None

    def __len__(self):
        return len(self.samples)

    def leaves(self):
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

    def __repr__(self):
        return "<Recording %s: %d samples, %d threads, %.2fs%s>" % (
            self.source or "(in memory)", len(self.samples),
            self.samples[["pid", "tid"]].drop_duplicates().shape[0] if len(self.samples) else 0,
            self.duration, (", filtered: " + "; ".join(self.steps)) if self.steps else "")

    # -- per-stack and per-frame helpers used by views, filters and exports ---------------

    def stack_weights(self, weight="samples"):
        """Total weight per stack id: samples (in ticks, see ``sample_weights``), or wall /
        CPU nanoseconds."""
        check_weight(weight)
        stack = self.samples["stack"].to_numpy()
        column = "ticks" if weight == "samples" else weight
        return np.bincount(stack, weights=self.samples[column].to_numpy(),
                           minlength=len(self._stacks))

    def frame_codes(self, by):
        """Code every frame by a grouping key; returns (codes per frame, keys table).

        ``by`` is ``function`` (module + qualname: how recordings are matched across
        machines and commits), ``line`` (module + qualname + line), ``file`` (module) or
        ``frame`` (every distinct frame).
        """
        if by not in self._codes:
            columns = {"function": ["module", "qualname"], "line": ["module", "qualname", "line"],
                       "file": ["module"], "frame": None}
            if by not in columns:
                raise ValueError("unknown grouping %r (choose function, line, file or frame)" % by)
            if columns[by] is None:
                codes = np.arange(len(self.frames), dtype=np.int64)
                keys = self.frames[["module", "qualname", "line"]].reset_index(drop=True)
            else:
                keys_index = pd.MultiIndex.from_frame(self.frames[columns[by]])
                codes, uniques = keys_index.factorize()
                keys = uniques.to_frame(index=False, name=columns[by])
                codes = codes.astype(np.int64)
            self._codes[by] = (codes, keys)
        return self._codes[by]

    # -- views and filters (see views.py, filters.py) -------------------------------------

    def by_function(self, weight="samples"):
        from spyanalyze import views
        return views.by_function(self, weight)

    def by_line(self, weight="samples"):
        from spyanalyze import views
        return views.by_line(self, weight)

    def by_file(self, weight="samples"):
        from spyanalyze import views
        return views.by_file(self, weight)

    def by_thread(self):
        from spyanalyze import views
        return views.by_thread(self)

    def timeline(self, freq="1s"):
        from spyanalyze import views
        return views.timeline(self, freq)

    def filter(self, **criteria):
        """Apply ``spyanalyze.filters.apply`` criteria; returns a new Recording."""
        from spyanalyze import filters
        return filters.apply(self, **criteria)


def load(path, strict=False, max_memory=None):
    """Load a .spy recording (``-`` reads standard input) into a ``Recording``.

    A recording that lost data (a torn tail, no trailer) loads with ``Recording.lost`` saying
    so, or raises ``IncompleteRecording`` when ``strict``.  ``max_memory`` is the reader's
    budget in bytes (see ``spyrec.spylimits``): a file needing more is a ``CorruptRecording``.
    """
    path = os.fspath(path)
    try:
        stream = spyformat.open_source(path)
        try:
            data = spyformat.read_recording(stream, max_memory=max_memory)
        finally:
            if path != "-":
                stream.close()
        if strict and data.lost:
            raise IncompleteRecording("%s lost data: %s" % (path, "; ".join(data.lost)))
        return Recording.from_data(data, source="<stdin>" if path == "-" else path)
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


# ------------------------------------------------------------------------------------------
# Building the tables


def check_weight(weight):
    if weight not in WEIGHTS:
        raise ValueError("unknown weight %r (choose samples, wall or cpu)" % (weight,))


def _canonical_frames(data):
    """Resolve string ids and fold frames with identical content onto one id."""
    strings = data.strings
    raw = data.frames
    keys = list(zip((strings[i] for i in raw["file"]), (strings[i] for i in raw["name"]),
                    (strings[i] for i in raw["qualname"]), raw["line"], raw["column"]))
    frame_map, unique = _fold(keys)
    file, name, qualname, line, column = (list(col) for col in zip(*unique)) if unique \
        else ([], [], [], [], [])
    frames = pd.DataFrame({"file": pd.Series(file, dtype=object), "name": pd.Series(name, dtype=object),
                           "qualname": pd.Series(qualname, dtype=object),
                           "line": np.asarray(line, dtype=np.int64),
                           "column": np.asarray(column, dtype=np.int64)})
    return frame_map, frames


def _drop_internal_frames(frame_map, frames):
    """Leave out the interpreter's shim frames (``spyanalyze.frames.interpreter_internal``):
    returns the frame map with -1 for them, and the frames table without them."""
    internal = frame_rules.interpreter_internal(frames["file"], frames["name"], frames["line"])
    if not internal.any():
        return frame_map, frames
    renumber = np.cumsum(~internal) - 1
    renumber[internal] = -1
    return renumber[frame_map], frames[~internal].reset_index(drop=True)


def _with_no_python_frame(frames):
    """The frames table plus, as its last row, the frame standing for no Python frames."""
    name = frame_rules.NO_PYTHON_FRAMES
    row = pd.DataFrame({"file": pd.Series([name], dtype=object), "name": pd.Series([name], dtype=object),
                        "qualname": pd.Series([name], dtype=object), "line": np.zeros(1, dtype=np.int64),
                        "column": np.full(1, -1, dtype=np.int64)})
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


def thread_display_name(name, tid):
    return name if isinstance(name, str) and name else "tid %d" % tid


def thread_label(name, tid):
    """``name (tid N)``, or just ``tid N`` for a thread without a name."""
    name = str(name)
    return name if name == "tid %d" % tid else "%s (tid %d)" % (name, tid)


def sample_weights(t, key, interval_ns):
    """Wall time each sample stands for, and the same in nominal intervals (``ticks``).

    A sample stands for the time until the same thread's next sample.  When the recorder
    falls behind (its CPU was taken, or a stack took long to read), it skips sampling ticks,
    and what the thread did then is best told by the sample before the gap: the state that
    made the round slow is the state the thread was still in.  Counting each sample once
    instead would under-weigh exactly the stacks that are slow to read.

    ``key`` identifies the thread (pid and tid combined).  The nominal interval is the median
    gap between consecutive samples of a thread (the rate actually achieved), else the header
    interval.  A thread's last sample, and a sample followed by a gap longer than
    ``MAX_GAP_INTERVALS`` nominal intervals (the recorder stopped, or the thread was not
    sampled in between), stands for one nominal interval, so a gap we know nothing about is
    never charged to the stack before it.
    """
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    codes, _uniques = pd.factorize(key)
    codes = codes.astype(np.uint16 if codes.max() < 65536 else np.int64)
    order = np.argsort(codes, kind="stable")      # radix sort on small codes; keeps time order
    ts = t[order]
    gap = np.empty(n, dtype=np.int64)
    gap[-1] = 0
    np.subtract(ts[1:], ts[:-1], out=gap[:-1])
    last = np.empty(n, dtype=bool)
    last[-1] = True
    np.not_equal(codes[order][1:], codes[order][:-1], out=last[:-1])
    valid = gap[~last]
    valid = valid[valid > 0]
    nominal = int(np.median(valid)) if len(valid) else int(interval_ns or 1)
    if nominal <= 0:
        nominal = int(interval_ns or 1)
    bad = last | (gap <= 0) | (gap > MAX_GAP_INTERVALS * nominal)
    weights_sorted = np.where(bad, nominal, gap)
    weights = np.empty(n, dtype=np.int64)
    weights[order] = weights_sorted
    return weights, weights / float(nominal)


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
    if n > 1 and (np.diff(t) < 0).any():       # keep every table in time order
        order = np.argsort(t, kind="stable")
        t, pid, tid, stack, cpu, rss, flags = (a[order] for a in (t, pid, tid, stack, cpu, rss, flags))
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
    origin = int(data.header.get("start_wall_ns") or 0)
    timestamp = pd.DatetimeIndex((t + origin).view("datetime64[ns]")).tz_localize("UTC")
    return pd.DataFrame({
        "t": t, "timestamp": timestamp, "pid": pid, "tid": tid, "thread": thread, "stack": stack,
        "wall": wall, "ticks": ticks, "cpu": cpu, "rss": rss,
        "idle": (flags & SampleFlag.IDLE) != 0, "gil": (flags & SampleFlag.GIL) != 0,
        "torn": (flags & SampleFlag.TORN) != 0, "flags": flags,
    }, index=timestamp.rename("time"), copy=False)   # one block per column: no consolidating copy
