"""Per-version CPython struct layouts, and the one place that picks a layout for a version.

Each family module (``v3_8``, ``v3_10``, ``v3_11``, ``v3_12``, ``debug_offsets``) holds only
frozen dataclasses of offsets and says in its docstring where its numbers come from.  Nothing
outside this package knows an offset: the walker reads fields through a ``Layout`` and branches
on its named traits (``frame_kind``, ``linetable_kind``, ``instr_kind``...), never on versions.

From 3.13 on the table entry is a ``DebugOffsetsSpec``: the layout is built from the target's
own ``_Py_DebugOffsets`` blob, so a new patch release needs no new table.  A minor newer than
the newest entry is tried with the newest spec, and accepted only if its blob passes every
check (see debug_offsets.py; the attach then also validates a live walk).
"""

from typing import Dict, Optional, Tuple, Union

from spyrec.errors import UnsupportedPython
from spyrec.layouts import debug_offsets, v3_8, v3_10, v3_11, v3_12
from spyrec.layouts.base import Layout
from spyrec.layouts.debug_offsets import DebugOffsetsSpec

__all__ = ["LAYOUTS", "SUPPORTED", "Layout", "debug_offsets_size", "layout_for",
           "supported_range"]

#: The single version dispatch: (major, minor) -> a fixed Layout or a debug-offsets spec.
#: (Typed ``Tuple[int, ...]``: it is looked up with ``tuple(version[:2])``.)
LAYOUTS: Dict[Tuple[int, ...], Union[Layout, DebugOffsetsSpec]] = {
    (3, 8): v3_8.V3_8,
    (3, 9): v3_8.V3_9,
    (3, 10): v3_10.V3_10,
    (3, 11): v3_11.V3_11,
    (3, 12): v3_12.V3_12,
    (3, 13): debug_offsets.V3_13,
    (3, 14): debug_offsets.V3_14,
    (3, 15): debug_offsets.V3_15,
}

SUPPORTED = tuple(sorted(LAYOUTS))


def supported_range() -> str:
    """``"3.8 to 3.15"``: the minors with a layout of their own."""
    lo, hi = SUPPORTED[0], SUPPORTED[-1]
    return "%d.%d to %d.%d" % (lo + hi)


def _entry(version: Tuple[int, ...],
           version_string: str) -> Tuple[Union[Layout, DebugOffsetsSpec], bool]:
    """(the table entry for ``version``, whether it is the newest spec tried on a newer minor)."""
    minor = tuple(version[:2])
    entry = LAYOUTS.get(minor)
    if entry is not None:
        return entry, False
    newest = SUPPORTED[-1]
    if minor[0] == newest[0] and minor > newest and isinstance(LAYOUTS[newest], DebugOffsetsSpec):
        return LAYOUTS[newest], True
    why = "older than" if minor < SUPPORTED[0] else "not one of"
    raise UnsupportedPython("Python %s is not supported: it is %s the versions spyrec reads "
                            "(CPython %s)" % (version_string, why, supported_range()))


def debug_offsets_size(version: Tuple[int, ...], version_string: str = "") -> Optional[int]:
    """Bytes of ``_Py_DebugOffsets`` to read at ``_PyRuntime`` for this version, or None."""
    entry, _ = _entry(version, version_string or ".".join(map(str, version)))
    return entry.size if isinstance(entry, DebugOffsetsSpec) else None


def layout_for(version: Tuple[int, ...], version_string: str = "",
               debug_blob: Optional[bytes] = None) -> Layout:
    """The layout of a CPython ``version``; UnsupportedPython if there is none.

    For 3.13+ ``debug_blob`` must hold ``debug_offsets_size(version)`` bytes read at
    ``_PyRuntime``.  For a minor newer than every entry the result has ``guessed_from`` set:
    the caller must still validate it against the live process.
    """
    version_string = version_string or ".".join(map(str, version))
    entry, _ = _entry(version, version_string)
    if isinstance(entry, DebugOffsetsSpec):
        if debug_blob is None:
            raise UnsupportedPython("Python %s: _Py_DebugOffsets not readable" % version_string)
        return entry.build(debug_blob, version_string, tuple(version[:2]))
    return entry
