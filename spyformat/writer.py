"""Writing a recording as a stream of chunks (formats/spy.md), in bounded memory and without
holding the sampler back: a batch of samples is encoded a slice at a time between rounds."""

import array
import zlib
from typing import Any, BinaryIO, Dict, Generator, List, Mapping, Optional, Sequence, Tuple

import msgpack

from spyformat.chunks import (FORMAT_VERSION, PREAMBLE, ZLIB_LEVEL, Codec, Kind, encode_chunk,
                              encode_preamble, frame_chunk)
from spyformat.columns import SAMPLE_COLUMNS, ColumnEncoder, Transform, new_column
from spyformat.records import LINE_LIMIT, FrameKind

#: A slice of a batch's encoding: rows of one column, or bytes of its compression.  Small
#: enough that a slice done between two rounds at 1 kHz does not make the next one late.
WRITE_SLICE_ROWS = 4096
WRITE_SLICE_BYTES = 128 * 1024
#: The DELTA columns (``t``, ``rss``) are kept as they are written, as differences from the
#: row before (the first of a batch from 0): one subtraction per sample as it comes, none
#: per value when the batch is encoded.
DIFFERENCED = tuple(name for name, (_, transforms) in SAMPLE_COLUMNS.items()
                    if transforms & Transform.DELTA)


class SpyWriter:
    """Stream a recording: take definitions, batch samples into columns, flush chunks.

    The writer never seeks, so ``stream`` may be a pipe.  Definitions (strings, frames,
    stacks) get the next id of their kind and are written in the same flush as, and before,
    the first samples that use them; until then a stack may be amended.  ``flush_interval_ns``
    bounds how much a killed recorder can lose; ``max_batch`` bounds how much memory pending
    samples take.  What to define once and reuse is the caller's business (see
    ``spyformat.interning.Interner``): the format allows the same content under several ids.
    """

    def __init__(self, stream: BinaryIO, codec: int = Codec.ZLIB, flush_interval_ns: int = 1_000_000_000,
                 max_batch: int = 65536):
        self._stream = stream
        self.codec = codec
        self.flush_interval_ns = flush_interval_ns
        self.max_batch = max_batch
        self._string_count = 0
        self._frame_count = 0
        self._stack_count = 0
        self._new_strings: List[str] = []
        # file, name, qualname (string ids), line, column, kind, source (1 + string id)
        self._new_frames: Tuple[List[int], ...] = ([], [], [], [], [], [], [])
        self._new_stacks_lengths: List[int] = []
        self._new_stacks_frames: List[int] = []
        # (kind, payload) process/thread records, in order
        self._records: List[Tuple[int, Dict[str, Any]]] = []
        self._columns = _new_columns()
        self._last = dict.fromkeys(DIFFERENCED, 0)  # the last value of each DIFFERENCED column
        #: The last ``samples`` rows, and their columns as arrays: a sampler passes the same
        #: rows round after round while its threads sleep (see ``samples``).
        self._bulk: Tuple[Any, List[array.array]] = (None, [])
        self._last_flush_ns: Optional[int] = None
        # the batch of samples being encoded: a generator of slices
        self._pending: Optional[Generator[None, None, None]] = None
        self.bytes_written = 0
        self.samples_written = 0
        self._stream.write(encode_preamble())
        self.bytes_written += PREAMBLE.size

    # -- definitions ---------------------------------------------------------------------

    def define_string(self, text: str) -> int:
        """Define a string; return its id."""
        self._new_strings.append(text)
        self._string_count += 1
        return self._string_count - 1

    def define_frame(self, file: int, name: int, qualname: int, line: int, column: int = -1,
                     kind: int = FrameKind.PYTHON, source: int = 0) -> int:
        """Define a frame from the string ids of its file, name and qualified name (``source``:
        1 + the string id of a native frame's source file, 0 for none); return its id.
        ValueError for a line or column the format cannot hold (a reader refuses the file)."""
        if not (0 <= line < LINE_LIMIT and -1 <= column < LINE_LIMIT):
            raise ValueError("frame line %r, column %r outside the format's range" % (line, column))
        files, names, qualnames, lines, columns, kinds, sources = self._new_frames
        files.append(file)
        names.append(name)
        qualnames.append(qualname)
        lines.append(line)
        columns.append(column)
        kinds.append(kind)
        sources.append(source)
        self._frame_count += 1
        return self._frame_count - 1

    def define_stack(self, frame_ids: Sequence[int]) -> int:
        """Define a stack from its frame ids, root (outermost) first; return its id."""
        self._new_stacks_lengths.append(len(frame_ids))
        self._new_stacks_frames.extend(frame_ids)
        self._stack_count += 1
        return self._stack_count - 1

    @property
    def written_stacks(self) -> int:
        """How many stacks are written: the ids below this one can no longer be amended."""
        return self._stack_count - len(self._new_stacks_lengths)

    def amend_stack(self, stack_id: int, frame_ids: Sequence[int]) -> bool:
        """Give a stack defined since the last flush other frames (root first): what a
        recorder learnt of its frames after the samples that use it (a native frame's line,
        decoded meanwhile).  False, and nothing changed, once the stack is written."""
        first = self.written_stacks
        if not first <= stack_id < self._stack_count:
            return False
        at = stack_id - first
        start = sum(self._new_stacks_lengths[:at])
        self._new_stacks_frames[start:start + self._new_stacks_lengths[at]] = frame_ids
        self._new_stacks_lengths[at] = len(frame_ids)
        return True

    # -- records -------------------------------------------------------------------------

    def write_header(self, header: Mapping[str, Any]) -> None:
        """Write the HEADER chunk; must come first.  ``header`` holds the spec's header fields."""
        fields = dict(header)
        fields["format"] = list(FORMAT_VERSION)
        fields["codec"] = Codec.NAMES[self.codec]
        self._write(Kind.HEADER, fields, Codec.NONE)

    def process(self, **fields: Any) -> None:
        """Queue a PROCESS record (pid, argv, python_version, executable, start_ns, end_ns, ...)."""
        self._records.append((Kind.PROCESS, fields))

    def thread(self, **fields: Any) -> None:
        """Queue a THREAD record (pid, tid, py_thread_id, name, start_ns, end_ns)."""
        self._records.append((Kind.THREAD, fields))

    def sample(self, t: int, pid: int, tid: int, stack: int, cpu: int, rss: int, flags: int,
               syscall: int = 0, wchan: int = 0) -> None:
        """One sample; ``syscall`` and ``wchan`` are 1 + a string id (0: none)."""
        columns, last = self._columns, self._last
        columns["t"].append(t - last["t"])
        columns["pid"].append(pid)
        columns["tid"].append(tid)
        columns["stack"].append(stack)
        columns["cpu"].append(cpu)
        columns["rss"].append(rss - last["rss"])
        last["t"], last["rss"] = t, rss
        columns["flags"].append(flags)
        columns["syscall"].append(syscall)
        columns["wchan"].append(wchan)
        if len(columns["t"]) >= self.max_batch:
            self._cut()

    def samples(self, t: int, pid: int, rss: int, rows: Sequence[Sequence[int]]) -> None:
        """Samples at one moment of threads that have not run since their last ones: ``rows``
        is (tids, stacks, flags, syscalls, wchans), a column each; their CPU deltas are 0.
        Rows passed again are taken to be unchanged (their columns are kept converted)."""
        if not rows[0]:
            return
        if self._bulk[0] is not rows:
            names = ("tid", "stack", "flags", "syscall", "wchan")
            self._bulk = (rows, [_filled(name, column) for name, column in zip(names, rows)])
        tids, stacks, flags, syscalls, wchans = self._bulk[1]
        count = len(tids)
        columns, last = self._columns, self._last
        for name, value in (("t", t), ("rss", rss)):  # one step, then the same value again
            columns[name].append(value - last[name])
            columns[name].extend(_filled(name, [0]) * (count - 1))
            last[name] = value
        columns["pid"].extend(_filled("pid", [pid]) * count)
        columns["tid"].extend(tids)
        columns["stack"].extend(stacks)
        columns["cpu"].extend(_filled("cpu", [0]) * count)
        columns["flags"].extend(flags)
        columns["syscall"].extend(syscalls)
        columns["wchan"].extend(wchans)
        if len(columns["t"]) >= self.max_batch:
            self._cut()

    def maybe_flush(self, now_ns: int) -> None:
        """Start writing what is pending when the flush interval has passed since the last
        time; its samples are then encoded a slice at each ``work()``."""
        if self._last_flush_ns is None:
            self._last_flush_ns = now_ns
        elif now_ns - self._last_flush_ns >= self.flush_interval_ns:
            self._last_flush_ns = now_ns
            self._cut()

    def work(self) -> None:
        """Do one slice of the batch being encoded, if any: a sampler calls this between
        rounds, so that writing a batch never holds a round back more than a slice."""
        pending = self._pending
        if pending is not None:
            try:
                next(pending)
            except StopIteration:
                self._pending = None
            except BaseException:
                self._pending = None  # the batch is lost with the stream that failed it
                raise

    def flush(self) -> None:
        """Write everything pending, samples included, then flush the stream."""
        self._cut()
        self._finish_pending()

    def _cut(self) -> None:
        """Write the pending definitions and records, and start the batch of samples that
        uses them (the one before it finished first: chunks keep their order)."""
        self._finish_pending()
        if self._new_strings:
            self._write(Kind.STRINGS, {"first": self._string_count - len(self._new_strings),
                                       "values": self._new_strings})
            self._new_strings = []
        files, names, qualnames, lines, columns, kinds, sources = self._new_frames
        if files:
            frames = {"first": self._frame_count - len(files), "file": files, "name": names,
                      "qualname": qualnames, "line": lines, "column": columns}
            if any(kinds):  # only Python frames: a chunk a 1.1 reader reads the same
                frames["kind"] = kinds
            if any(sources):
                frames["source"] = sources
            self._write(Kind.FRAMES, frames)
            self._new_frames = ([], [], [], [], [], [], [])
        if self._new_stacks_lengths:
            self._write(Kind.STACKS, {"first": self._stack_count - len(self._new_stacks_lengths),
                                      "lengths": self._new_stacks_lengths,
                                      "frames": self._new_stacks_frames})
            self._new_stacks_lengths = []
            self._new_stacks_frames = []
        for kind, payload in self._records:
            self._write(kind, payload)
        self._records = []
        if self._columns["t"]:
            batch, self._columns = self._columns, _new_columns()
            self._last = dict.fromkeys(DIFFERENCED, 0)
            self._pending = self._samples_chunk(batch)
        else:
            self._stream.flush()

    def _finish_pending(self) -> None:
        while self._pending is not None:
            self.work()

    def _samples_chunk(self, batch: Dict[str, array.array]) -> Generator[None, None, None]:
        """Encode and write one SAMPLES chunk, yielding after each slice of the work."""
        count = len(batch["t"])
        encoded = {}
        for name, (dtype, transforms) in SAMPLE_COLUMNS.items():
            encoder = ColumnEncoder(dtype, transforms & ~Transform.DELTA if name in DIFFERENCED
                                    else transforms)
            values = batch[name]
            for start in range(0, count, WRITE_SLICE_ROWS):
                encoder.add(values[start:start + WRITE_SLICE_ROWS])
                yield
            encoded[name] = [dtype, transforms, encoder.encoded()]
        raw = msgpack.packb({"count": count, "columns": encoded}, use_bin_type=True)
        if self.codec == Codec.ZLIB:
            compressor, parts = zlib.compressobj(ZLIB_LEVEL), []
            for start in range(0, len(raw), WRITE_SLICE_BYTES):
                yield
                parts.append(compressor.compress(raw[start:start + WRITE_SLICE_BYTES]))
            parts.append(compressor.flush())
            payload = b"".join(parts)
        else:
            payload = raw
        data = frame_chunk(Kind.SAMPLES, self.codec, payload, len(raw))
        self._stream.write(data)
        self.bytes_written += len(data)
        self.samples_written += count
        self._stream.flush()

    def close(self, trailer: Mapping[str, Any]) -> None:
        """Flush everything and end the recording with a TRAILER chunk."""
        self.flush()
        self._write(Kind.TRAILER, dict(trailer))
        self._stream.flush()

    def _write(self, kind: int, payload: Any, codec: Optional[int] = None) -> None:
        data = encode_chunk(kind, payload, self.codec if codec is None else codec)
        self._stream.write(data)
        self.bytes_written += len(data)


def _new_columns() -> Dict[str, array.array]:
    return {name: new_column(dtype) for name, (dtype, _) in SAMPLE_COLUMNS.items()}


def _filled(name: str, values: Sequence[int]) -> array.array:
    """``values`` as an array of column ``name``'s type."""
    column = new_column(SAMPLE_COLUMNS[name][0])
    column.extend(values)
    return column
