"""Where the sampling loop's output goes: a sink.

The sampler hands a sink what each round found: definitions (from the ``StackResolver``),
threads appearing, named and ending, samples, and a chance to write between rounds.  The
``.spy`` writer (``spyformat.SpyWriter``) is one sink; ``spyrec top``'s ``Tally`` passes every
call on to another while counting; ``NullSink`` keeps nothing, for measuring the loop alone.
"""

from typing import Any, Protocol, Sequence


class Sink(Protocol):
    """What the sampler and the resolver call.  Ids are the sink's own, given in order.  A
    sink that can amend a stack until it writes it (``SpyWriter.amend_stack`` and
    ``written_stacks``) gets native frames' lines decoded after the samples that use them
    (see StackResolver.settle)."""

    def define_string(self, text: str) -> int: ...

    def define_frame(self, file: int, name: int, qualname: int, line: int, column: int = -1,
                     kind: int = 0, source: int = 0) -> int:
        """A frame from the string ids of its file, name and qualified name; ``kind`` a
        ``spyformat.FrameKind`` value; ``source`` 1 + the string id of a native frame's
        source file (0: none)."""

    def define_stack(self, frame_ids: Sequence[int]) -> int:
        """A stack from its frame ids, root first."""

    def process(self, **fields: Any) -> None:
        """A PROCESS record's fields (formats/spy.md), at its start and at its end."""

    def thread(self, **fields: Any) -> None:
        """A THREAD record's fields: a thread appeared, was named or ended."""

    def sample(self, t: int, pid: int, tid: int, stack: int, cpu: int, rss: int, flags: int,
               syscall: int = 0, wchan: int = 0) -> None:
        """One thread's sample; ``syscall`` and ``wchan`` are 1 + a string id (0: none)."""

    def samples(self, t: int, pid: int, rss: int, rows: Sequence[Sequence[int]]) -> None:
        """Samples at one moment of threads that have not run since their last ones: ``rows``
        is (tids, stacks, flags, syscalls, wchans), a column each; their CPU deltas are 0."""

    def maybe_flush(self, now_ns: int) -> None:
        """Called every round: a sink that batches decides here whether to start writing."""

    def work(self) -> None:
        """Called when the sampler has time before its next round: a slice of pending work."""

    def flush(self) -> None: ...

    def close(self, trailer: dict) -> None:
        """The end: the recorder's account of its run (the TRAILER's fields)."""


class NullSink:
    """A sink that keeps nothing but counts: what the sampling loop costs without a writer."""

    def __init__(self) -> None:
        self.definitions = 0
        self.samples_written = 0
        self.bytes_written = 0

    def _define(self, *_args: Any) -> int:
        self.definitions += 1
        return self.definitions - 1

    define_string = define_frame = define_stack = _define

    def process(self, **fields: Any) -> None:
        pass

    thread = process

    def sample(self, *_args: Any) -> None:
        self.samples_written += 1

    def samples(self, t: int, pid: int, rss: int, rows: Sequence[Sequence[int]]) -> None:
        self.samples_written += len(rows[0])

    def maybe_flush(self, now_ns: int) -> None:
        pass

    def work(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self, trailer: dict) -> None:
        pass
