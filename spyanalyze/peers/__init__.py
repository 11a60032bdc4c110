"""Other profilers' files, read into the same tables as a .spy recording.

``sniff(head)`` names the format of a file from its first bytes; ``read(kind, stream)`` turns it
into a ``spyformat.RecordingData`` that ``Recording.from_data`` builds the usual tables from.
What a format does not record (CPU time, memory, thread states, timestamps) stays zero, and the
header's ``imported`` field says so in a sentence that ``spyanalyze info`` prints.

Formats: Austin's text and MOJO output (``austin``), py-spy's raw collapsed stacks and its
speedscope JSON (``pyspy``).  Their files are untrusted input like a .spy file: every item is
charged to the reader's memory budget before it is kept (``builder``), and any flaw is a
``CorruptRecording``.
"""

from typing import Optional

from spyanalyze.peers import austin, pyspy

#: Bytes of a file ``sniff`` looks at.
HEAD_BYTES = 512

READERS = {
    "austin-mojo": austin.read_mojo,
    "austin-text": austin.read_text,
    "speedscope": pyspy.read_speedscope,
    "collapsed": pyspy.read_collapsed,
}

#: What each format is, in a sentence.
NAMES = {"austin-mojo": "Austin's MOJO output", "austin-text": "Austin's text output",
         "speedscope": "a speedscope profile", "collapsed": "collapsed stacks (py-spy raw output)"}


def sniff(head: bytes) -> Optional[str]:
    """The format of a file that is not a .spy recording, from its first bytes: one of
    ``READERS``, or None when it is binary and none of them (then it is no profile we read)."""
    if head.startswith(austin.MOJO_MAGIC):
        return "austin-mojo"
    if austin.is_text(head):
        return "austin-text"
    if pyspy.is_speedscope(head):
        return "speedscope"
    if not head or b"\0" in head:
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:       # not just a character cut by the head's end
            return None
    return None if head.lstrip().startswith((b"{", b"[")) else "collapsed"


class HeadStream:
    """A binary stream whose first bytes (``head``) were read ahead to tell its format, and are
    read again: a pipe cannot seek back, and ``peek`` may return fewer bytes than asked."""

    def __init__(self, stream, size: int):
        self._stream = stream
        pieces, got = [], 0
        while got < size:
            piece = stream.read(size - got)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        self.head = self._pending = b"".join(pieces)

    def read(self, size: int = -1) -> bytes:
        if self._pending:
            if size is None or size < 0:
                data, self._pending = self._pending + self._stream.read(), b""
                return data
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        return self._stream.read(size)

    def readline(self, limit: int = -1) -> bytes:
        if not self._pending:
            return self._stream.readline(limit)
        end = self._pending.find(b"\n")
        if end >= 0 and (limit < 0 or end < limit):
            line, self._pending = self._pending[:end + 1], self._pending[end + 1:]
            return line
        if 0 <= limit <= len(self._pending):
            line, self._pending = self._pending[:limit], self._pending[limit:]
            return line
        line, self._pending = self._pending, b""
        return line + self._stream.readline(limit - len(line) if limit >= 0 else -1)


def read(kind: str, stream, max_memory: Optional[int] = None):
    """Read a peer file of format ``kind`` (see ``sniff``) from a binary stream."""
    return READERS[kind](stream, max_memory)
