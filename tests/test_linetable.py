"""The line-table decoders against CPython's own answers, under every supported interpreter.

GIVEN a target interpreter, WHEN it dumps its code objects' raw tables together with what
``co_positions()`` / ``co_lines()`` / ``PyCode_Addr2Line`` say for every code unit (see
linetable_dump.py), THEN our decoder of that version's encoding, fed the same bytes, gives the
same line (and column on 3.11+) for every code unit.
"""

import json
import os
import subprocess

import pytest

from linetable_check import assert_decoder_matches
from pythons import SUPPORTED, minor_of, python_for
from spyrec.layouts import LAYOUTS
from spyrec.linetable import (OPEN_END, LineTable, decode_linetable310, decode_lnotab,
                              decode_locations311)

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

DUMP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "linetable_dump.py")


def kind_for(label):
    minor = minor_of(label)
    entry = LAYOUTS[tuple(int(x) for x in minor.split("."))]
    return getattr(entry, "linetable_kind", "locations311")


@pytest.mark.parametrize("label", SUPPORTED + ("3.11-debian",))
def test_decoder_matches_cpython(label):
    python = python_for(label)
    # GIVEN CPython's own answers for every code unit of many code objects
    result = subprocess.run([python, DUMP], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    dump = json.loads(result.stdout)
    # WHEN our decoder reads the same bytes THEN every line and column agrees
    assert_decoder_matches(dump, kind_for(label))


def test_negative_offset_is_firstlineno():
    # A 3.11/3.12 frame that has not started has prev_instr one unit before the code.
    table = LineTable("locations311", bytes([0xF8 | 0, ]), 7)
    assert table.position(-2) == (7, -1)


def test_lnotab_signed_and_split_deltas():
    # (addr +6, line +1), (addr +0, line +127), (addr +0, line +3): big jump split in pairs;
    # (addr +255, line 0), (addr +4, line -2 as 0xfe): long bytecode jump, negative delta.
    table = bytes([6, 1, 0, 127, 0, 3, 255, 0, 4, 0xFE])
    entries = decode_lnotab(table, 10)
    assert entries == [(0, 6, 10, -1), (6, 265, 141, -1), (265, OPEN_END, 139, -1)]


def test_linetable310_no_line_marker():
    # [0,4) line +0 -> 5; [4,6) no line (-128); [6,10) line +2 -> 7 (the -128 left it at 5).
    entries = decode_linetable310(bytes([4, 0, 2, 0x80, 4, 2]), 5)
    assert entries == [(0, 4, 5, -1), (4, 6, 0, -1), (6, 10, 7, -1)]


def test_locations311_forms():
    table = bytes([
        0x80 | (13 << 3) | 0, 0x02,  # no-columns form, 1 unit, line +1 (signed varint 2)
        0x80 | (11 << 3) | 1, 4, 9,  # one-line form, 2 units, line +1, columns 4..9
        0x80 | (3 << 3) | 0, 0x25,  # short form 3, 1 unit: column 3*8 + 2 = 26
        0x80 | (14 << 3) | 0, 0x41, 0x02, 0x00, 0x06, 0x07,  # long form: line +(0x41 chunks)
        0x80 | (15 << 3) | 2,  # no location, 3 units
    ])
    entries = decode_locations311(table, 100)
    # long-form line delta: varint 0x41,0x02 = 1 | 2 << 6 = 129 -> signed -64
    assert entries == [(0, 2, 101, -1), (2, 6, 102, 4), (6, 8, 102, 26), (8, 10, 38, 5),
                       (10, 16, 0, -1)]


def test_a_table_with_lines_no_code_has_is_refused():
    """Bytes that are no line table (a freed code object's, its memory reused by a source
    file's text) can decode to lines below 0; the code object is then not taken for one."""
    # 3.11+ no-columns form, 1 unit, line delta -10 (signed varint 21) from firstlineno 1
    with pytest.raises(ValueError):
        LineTable("locations311", bytes([0x80 | (13 << 3) | 0, 21]), 1)
    # the same delta from line 20 is a line a code object can have
    assert LineTable("locations311", bytes([0x80 | (13 << 3) | 0, 21]), 20).position(0)[0] == 10
