"""The format's exceptions, and the root of the whole project's exception tree.

``SpyError`` is a problem the user can act on, reported by the command-line tools as one line
and a non-zero exit; the recorder's own errors (spyrec.errors) derive from it too.
"""

from typing import Optional


class SpyError(Exception):
    """Base class: a problem the user can act on, reported as one line."""

    exit_code = 1


class CorruptRecording(SpyError):
    """A .spy file is damaged, truncated in its header, or not a recording at all."""

    def __init__(self, reason: str, offset: Optional[int] = None):
        self.reason = reason
        self.offset = offset
        where = "" if offset is None else " at byte offset %d" % offset
        super().__init__("corrupt recording%s: %s" % (where, reason))


class IncompatibleRecording(SpyError):
    """A .spy file written by a newer major format version."""
