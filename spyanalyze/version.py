"""The package's version, in a module of its own so that the exports can name it without
importing the package's entry points."""

from spyformat.version import __version__

__all__ = ["__version__", "exporter"]


def exporter() -> str:
    """How an export names the program that wrote it."""
    return "spyanalyze@%s" % __version__
