"""Bytecode offset -> line (and column): one decoder per CPython line-table encoding.

Every decoder turns the raw table bytes into half-open ranges ``[start, end)`` of *byte*
offsets, each with a line (0 = "no line") and a 0-based start column (-1 = unknown).  Ranges are
exact: checked per code unit against CPython's own ``co_positions()`` (3.11+), ``co_lines()``
(3.10) and ``dis.findlinestarts()`` / ``PyCode_Addr2Line`` (<=3.9) in tests/test_linetable.py.

A range that *starts* at an offset owns it.  (Treating the end as inclusive returns the previous
entry's line whenever the target begins an entry: about a fifth of instruction starts would
be wrong that way.)
"""

from bisect import bisect_right
from typing import Callable, Dict, List, NamedTuple, Tuple

from spyformat.records import LINE_LIMIT

#: End of the last ``lnotab`` range: the table does not know the code length, and CPython's
#: ``PyCode_Addr2Line`` keeps the last line up to any offset.
OPEN_END = 1 << 62

Entry = Tuple[int, int, int, int]  # start, end, line, column


def decode_lnotab(table: bytes, firstlineno: int) -> List[Entry]:
    """``co_lnotab``, CPython <= 3.9 (Objects/lnotab_notes.txt of v3.9).

    Pairs ``(addr_delta u8, line_delta i8)``; the line delta is signed since 3.6.  The line at
    an offset is ``firstlineno`` plus the line deltas of every pair whose running address is
    <= the offset.  Large jumps are split into several pairs (``(0, 127)``, ``(255, 0)``), which
    the running sums absorb.
    """
    starts, lines = [0], [firstlineno]
    addr, line = 0, firstlineno
    for i in range(0, len(table) - 1, 2):
        addr += table[i]
        line += table[i + 1] - 256 if table[i + 1] >= 128 else table[i + 1]
        if addr == starts[-1]:
            lines[-1] = line
        else:
            starts.append(addr)
            lines.append(line)
    ends = starts[1:] + [OPEN_END]
    return _merge([(s, e, ln, -1) for s, e, ln in zip(starts, ends, lines)])


def decode_linetable310(table: bytes, firstlineno: int) -> List[Entry]:
    """``co_linetable``, CPython 3.10 (Objects/lnotab_notes.txt of v3.10, PEP 626).

    Pairs ``(start_delta u8, line_delta i8)``: each covers ``[start, start + start_delta)``
    and start always advances.  ``line_delta == -128`` means "no line" for that range and
    leaves the running line unchanged; otherwise the delta is added *before* the range gets its
    line (so ``(0, 127)`` pairs carry big line jumps).
    """
    entries: List[Entry] = []
    start, line = 0, firstlineno
    for i in range(0, len(table) - 1, 2):
        delta, line_delta = table[i], table[i + 1]
        if line_delta == 128:  # -128 as a signed byte
            this_line = 0
        else:
            line += line_delta - 256 if line_delta > 128 else line_delta
            this_line = line
        if delta:
            _append(entries, start, start + delta, this_line, -1)
            start += delta
    return _merge(entries)


def decode_locations311(table: bytes, firstlineno: int) -> List[Entry]:
    """The 3.11+ location table (Objects/locations.md of v3.11; same format in 3.12-3.14).

    Each entry starts with a byte with bit 7 set: ``code`` = bits 3-6, ``length`` = bits 0-2
    plus one, in 2-byte code units.  Then, by code:

    ====== =================== =================================================
    code   line delta          then
    ====== =================== =================================================
    15     none (no location)  -
    14     signed varint       varints: end-line delta, column+1, end-column+1
    13     signed varint       - (no columns)
    10-12  code - 10           start column byte, end column byte
    0-9    0                   one byte: column = code*8 + bits 4-6
    ====== =================== =================================================

    Varints are 6-bit little-endian chunks, bit 6 = "more"; a signed varint is ``v >> 1``,
    negated when ``v & 1``.
    """
    entries: List[Entry] = []
    n = len(table)
    pos, start, line = 0, 0, firstlineno
    while pos < n:
        first = table[pos]
        pos += 1
        code = (first >> 3) & 15
        end = start + ((first & 7) + 1) * 2
        column = -1
        if code == 15:
            this_line = 0
        elif code == 14 or code == 13:
            delta, pos = _varint(table, pos)
            line += -(delta >> 1) if delta & 1 else delta >> 1
            this_line = line
            if code == 14:
                _, pos = _varint(table, pos)  # end line delta
                col, pos = _varint(table, pos)
                _, pos = _varint(table, pos)  # end column + 1
                column = col - 1
        elif code >= 10:
            line += code - 10
            this_line = line
            column = table[pos]
            pos += 2
        else:
            this_line = line
            column = (code << 3) | ((table[pos] >> 4) & 7)
            pos += 1
        _append(entries, start, end, this_line, column)
        start = end
    return entries


def _varint(table: bytes, pos: int) -> Tuple[int, int]:
    byte = table[pos]
    pos += 1
    value, shift = byte & 63, 0
    while byte & 64:
        byte = table[pos]
        pos += 1
        shift += 6
        value |= (byte & 63) << shift
    return value, pos


def _append(entries: List[Entry], start: int, end: int, line: int, column: int) -> None:
    if end > start:
        entries.append((start, end, line, column))


def _merge(entries: List[Entry]) -> List[Entry]:
    """Join adjacent ranges with the same line and column (the lookup stays exact)."""
    out: List[Entry] = []
    for entry in entries:
        if out and out[-1][1] == entry[0] and out[-1][2:] == entry[2:]:
            out[-1] = (out[-1][0], entry[1]) + entry[2:]
        else:
            out.append(entry)
    return out


DECODERS: Dict[str, Callable[[bytes, int], List[Entry]]] = {
    "lnotab": decode_lnotab,
    "linetable310": decode_linetable310,
    "locations311": decode_locations311,
}


class Position(NamedTuple):
    line: int  # 0 when the table has no line for the offset
    column: int  # 0-based, -1 when unknown or not recorded by this version


class LineTable:
    """A decoded table with ``position(offset)`` by binary search over range starts."""

    __slots__ = ("firstlineno", "entries", "_starts", "_prologue_end")

    def __init__(self, kind: str, table: bytes, firstlineno: int):
        """ValueError for a table with a line below 0 or past what a recording holds: bytes
        that are no line table (a code object freed, its table's memory reused)."""
        self.firstlineno = firstlineno
        self.entries = DECODERS[kind](table, firstlineno)
        if not all(0 <= entry[2] < LINE_LIMIT for entry in self.entries):
            raise ValueError("a line outside [0, %d)" % LINE_LIMIT)
        self._starts = [entry[0] for entry in self.entries]
        #: Where the first instruction with a line starts.  3.11+ open a frame with instructions
        #: that have none (MAKE_CELL, COPY_FREE_VARS, 3.12's POP_TOP after RETURN_GENERATOR)
        #: before RESUME, which has the ``def`` line: a frame there has not started its body.
        self._prologue_end = next((start for start, _, line, _ in self.entries if line > 0),
                                  OPEN_END)

    def position(self, offset: int) -> Position:
        """Line and column of the instruction at byte ``offset``.

        A frame that has not started its body is at ``co_firstlineno``: a negative offset, as
        CPython reports it (``PyCode_Addr2Line``), and an instruction of the prologue before
        the first one with a line.  An instruction without a line further on (an exception
        handler's, a loop's jump back) has line 0.
        """
        if offset < self._prologue_end:
            return Position(self.firstlineno, -1)
        # (past the prologue's end, which is an entry's start: some entry starts at or before)
        _, end, line, column = self.entries[bisect_right(self._starts, offset) - 1]
        if offset >= end:
            return Position(0, -1)
        return Position(line, column)
