"""The package's version, in a module of its own so that the exports can name it without
importing the package's entry points."""


def _version():
    try:
        from importlib.metadata import version
        return version("spyrec")
    except Exception:  # not installed as a distribution (a bare checkout on sys.path)
        from spyrec import __version__
        return __version__


__version__ = _version()
