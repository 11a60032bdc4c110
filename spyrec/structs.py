"""Precompiled ``struct`` readers for a handful of fields at layout-given offsets.

``FieldStruct([(offset, fmt), ...])`` builds one ``struct.Struct`` that skips the gaps between
the fields, so reading four fields of a frame is a single C call on the hot path.  Values come
back in the order the fields were given, whatever their offsets.
"""

import struct
from operator import itemgetter
from typing import Any, Callable, Sequence, Tuple


class FieldStruct:
    """``unpack_from(buffer, offset=0)`` -> the fields' values, in the order given."""

    __slots__ = ("size", "unpack_from", "_struct")
    size: int
    #: ``struct.Struct.unpack_from`` itself when the fields are in offset order.
    unpack_from: Callable[..., Tuple[Any, ...]]

    def __init__(self, fields: Sequence[Tuple[int, str]]):
        order = sorted(range(len(fields)), key=lambda i: fields[i][0])
        fmt, pos = "<", 0
        for i in order:
            offset, code = fields[i]
            if offset < pos:
                raise ValueError("overlapping fields at offset %d" % offset)
            if offset > pos:
                fmt += "%dx" % (offset - pos)
            fmt += code
            pos = offset + struct.calcsize("<" + code)
        self._struct = struct.Struct(fmt)
        self.size = pos
        if order == list(range(len(fields))):
            self.unpack_from = self._struct.unpack_from
        else:
            position = [order.index(i) for i in range(len(fields))]
            getter = itemgetter(*position)
            unpack = self._struct.unpack_from

            def unpack_from(buffer: Any, offset: int = 0) -> Tuple[Any, ...]:
                return getter(unpack(buffer, offset))

            self.unpack_from = unpack_from
