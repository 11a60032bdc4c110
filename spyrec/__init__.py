"""spyrec: record every thread's Python stack of a running CPython process, from outside it."""

__version__ = "0.1.0"
