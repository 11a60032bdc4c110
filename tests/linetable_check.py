"""One check shared by the line-table tests: our decoder against CPython's own answers."""

from spyrec.linetable import LineTable


def assert_decoder_matches(dump, kind):
    """Every code unit of every code object in ``dump`` (see linetable_dump.py) decodes, with
    our decoder for ``kind``, to the line (and column) CPython itself reported; but the units of
    a 3.11+ prologue (those before the first with a line) to the ``def`` line, as a frame that
    has not started."""
    checked = 0
    mismatches = []
    for code in dump["codes"]:
        table = LineTable(kind, bytes.fromhex(code["table"]), code["firstlineno"])
        lines = code["lines"]
        prologue = next((i for i, line in enumerate(lines) if line), len(lines))
        for i in range(code["units"]):
            want = (lines[i], code["columns"][i]) if i >= prologue else (code["firstlineno"], -1)
            got = tuple(table.position(2 * i))
            checked += 1
            if got != want:
                mismatches.append((code["file"], code["name"], 2 * i, want, got))
    assert checked > 50000
    assert not mismatches, "%d of %d differ, e.g. %s" % (len(mismatches), checked,
                                                        mismatches[:5])
    assert any(max(code["lines"]) > 65535 for code in dump["codes"])
