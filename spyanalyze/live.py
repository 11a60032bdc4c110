"""Following a recording while it is written (``spyanalyze top --live``): a file that grows, or
a pipe from ``spyrec -o -``, read chunk by chunk in a thread of its own, and looked at whole
whenever the view is drawn again."""

import os
import stat
import threading
from typing import BinaryIO, Optional

import spyformat
from spyformat.reader import RecordingBuilder, RecordingData

#: How often the end of a regular file is looked at again for more (seconds).
POLL_S = 0.1


class GrowingStream:
    """A file or pipe read as it grows: ``read`` returns what has come (a byte at least), waits
    at the end of a regular file until more comes, and returns nothing once a pipe closes or
    ``stop`` is set."""

    def __init__(self, stream: BinaryIO, stop: threading.Event):
        self._fd = stream.fileno()
        self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._stop = stop

    def read(self, size: int) -> bytes:
        while True:
            data = os.read(self._fd, size)
            if data or not self._regular or self._stop.is_set():
                return data
            self._stop.wait(POLL_S)


class LiveRecording(threading.Thread):
    """Reads a recording as it is written, until its TRAILER, the end of its pipe, or ``stop``;
    ``snapshot`` gives what has been read so far, ``error`` what made reading fail."""

    def __init__(self, stream: BinaryIO, max_memory: Optional[int] = None):
        super().__init__(name="spyanalyze live reader", daemon=True)
        self._stopping = threading.Event()
        self._builder = RecordingBuilder(max_memory)
        self._reader = spyformat.SpyReader(GrowingStream(stream, self._stopping), self._builder.budget)
        self._lock = threading.Lock()
        self._added = 0  # chunks read
        self._taken = -1  # chunks read at the last snapshot
        self.error: Optional[Exception] = None
        self.whole: Optional[RecordingData] = None  # set once the reading is over

    def run(self) -> None:
        try:
            for chunk in self._reader.chunks():
                with self._lock:
                    self._builder.add(chunk)
                    self._added += 1
                if chunk.kind == spyformat.Kind.TRAILER:
                    self._stopping.set()  # the writer is done: no more to wait for
            with self._lock:
                self.whole = self._builder.result(self._reader, finished=True)
        except Exception as exc:  # noqa: BLE001 - a recording is untrusted input (see load)
            self.error = exc

    def snapshot(self) -> Optional[RecordingData]:
        """The recording read so far, or None when nothing new came since the last call (or
        not even its HEADER yet)."""
        with self._lock:
            if self.whole is not None:
                return self.whole
            if self._added == self._taken or not self._builder.data.header:
                return None
            self._taken = self._added
            return self._builder.result(self._reader)

    @property
    def over(self) -> bool:
        return not self.is_alive()

    def stop(self) -> None:
        self._stopping.set()
