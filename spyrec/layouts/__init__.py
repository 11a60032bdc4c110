"""Per-version CPython struct layouts, and the one place that picks a layout for a version.

Each family module (``v3_8``, ``v3_10``, ``v3_11``, ``v3_12``, ``debug_offsets``) holds only
frozen dataclasses of offsets and says in its docstring where its numbers come from.  Nothing
outside this package knows an offset: the walker reads fields through a ``Layout`` and branches
on its named traits (``frame_kind``, ``linetable_kind``, ``instr_kind``...), never on versions.

From 3.13 on the table entry is a ``DebugOffsetsSpec``: the layout is built from the target's
own ``_Py_DebugOffsets`` blob, so a new patch release needs no new table.
"""

from typing import Dict, Optional, Tuple, Union

from spyrec.errors import UnsupportedPython
from spyrec.layouts import debug_offsets, v3_8, v3_10, v3_11, v3_12
from spyrec.layouts.base import Layout
from spyrec.layouts.debug_offsets import DebugOffsetsSpec

__all__ = ["LAYOUTS", "SUPPORTED", "Layout", "debug_offsets_size", "layout_for",
           "supported_range"]

#: The single version dispatch: (major, minor) -> a fixed Layout or a debug-offsets spec.
LAYOUTS: Dict[Tuple[int, int], Union[Layout, DebugOffsetsSpec]] = {
    (3, 8): v3_8.V3_8,
    (3, 9): v3_8.V3_9,
    (3, 10): v3_10.V3_10,
    (3, 11): v3_11.V3_11,
    (3, 12): v3_12.V3_12,
    (3, 13): debug_offsets.V3_13,
}

SUPPORTED = tuple(sorted(LAYOUTS))


def supported_range() -> str:
    lo, hi = SUPPORTED[0], SUPPORTED[-1]
    return "%d.%d-%d.%d" % (lo + hi)


def _entry(version: Tuple[int, ...], version_string: str):
    entry = LAYOUTS.get(tuple(version[:2]))
    if entry is None:
        raise UnsupportedPython("Python %s is not supported (spyrec supports CPython %s)"
                                % (version_string, supported_range()))
    return entry


def debug_offsets_size(version: Tuple[int, ...], version_string: str = "") -> Optional[int]:
    """Bytes of ``_Py_DebugOffsets`` to read at ``_PyRuntime`` for this version, or None."""
    entry = _entry(version, version_string or ".".join(map(str, version)))
    return entry.size if isinstance(entry, DebugOffsetsSpec) else None


def layout_for(version: Tuple[int, ...], version_string: str = "",
               debug_blob: Optional[bytes] = None) -> Layout:
    """The layout of a CPython ``version``; UnsupportedPython if there is none.

    For 3.13+ ``debug_blob`` must hold ``debug_offsets_size(version)`` bytes read at
    ``_PyRuntime``.
    """
    version_string = version_string or ".".join(map(str, version))
    entry = _entry(version, version_string)
    if isinstance(entry, DebugOffsetsSpec):
        if debug_blob is None:
            raise UnsupportedPython("Python %s: _Py_DebugOffsets not readable" % version_string)
        return entry.build(debug_blob, version_string)
    return entry
