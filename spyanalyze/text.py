"""Names from a recording made safe to show (``printable``, shared with the recorder) and fit
for line-based formats."""

from spyformat.text import printable

__all__ = ["printable", "collapsed_name"]


def collapsed_name(text):
    """A frame or thread name for collapsed stacks, where ';' separates frames and a line ends
    a stack."""
    return printable(text).replace(";", ":")
