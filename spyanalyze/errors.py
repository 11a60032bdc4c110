"""The analyser's own errors: subclasses of ``spyformat.errors.SpyError``, so the one CLI wrapper
turns each into a single ``spyanalyze: error: ...`` line.

Format problems (bad magic, torn chunks, newer major version) stay ``CorruptRecording`` and
``IncompatibleRecording`` from ``spyformat.errors``; this module only adds what is the analyser's
own: a file it cannot open, a filter that leaves nothing, a thread that does not exist.
"""

from spyformat.errors import CorruptRecording, IncompatibleRecording, SpyError

__all__ = ["AnalysisError", "CorruptRecording", "EmptyResult", "IncompatibleRecording",
           "IncompleteRecording", "SpyError", "TooLarge", "UnknownThread", "UnreadableFile"]


class IncompleteRecording(SpyError):
    """The recording lost data (a torn tail, no trailer) and the caller asked for it whole
    (``load(..., strict=True)``, ``spyanalyze --strict``)."""


class AnalysisError(SpyError):
    """A problem with what the user asked of a recording (as opposed to the file itself)."""


class UnreadableFile(AnalysisError):
    """The path cannot be opened (missing, a directory, no permission)."""


class EmptyResult(AnalysisError):
    """Nothing is left to analyse: an empty recording, or filters that removed every sample."""


class TooLarge(AnalysisError):
    """A result would be larger than the analyser builds (a timeline of too many buckets)."""


class UnknownThread(AnalysisError):
    """A thread selector (id or name pattern) matches no thread of the recording."""
