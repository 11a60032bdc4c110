"""spyrec: record every thread's Python stack of a running CPython process, from outside it."""

from spyformat.version import __version__

__all__ = ["__version__"]
