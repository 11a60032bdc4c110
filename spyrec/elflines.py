"""The source file and line of an address in native code, from the DWARF line table.

A build with debug information (CPython's own, by default; extension modules built with ``-g``)
carries ``.debug_line`` in the file; a distribution strips it into a separate file, installed
with its ``-dbg``/``-dbgsym`` package under ``/usr/lib/debug``, found by the library's build id
or its ``.gnu_debuglink`` name, in the target's own root.  Only the compilation unit holding an
address is decoded (``.debug_aranges`` says which), once, into sorted rows.  pyelftools parses
the headers; the line program itself is decoded here: pyelftools makes an object per opcode,
several times slower on the interpreter's largest unit (Python/ceval.c).
"""

import array
import bisect
import os
from typing import Dict, List, Optional, Tuple

from elftools.dwarf.dwarfinfo import DWARFInfo
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from spyrec.symbols import ElfImage

#: Where distributions install separate debug files (by build id, or by the library's path).
DEBUG_ROOT = "/usr/lib/debug"
#: Compilation units decoded and kept per file.
UNITS_KEPT = 512
#: Rows decoded from one unit at most (a hostile or damaged file stops there).
MAX_ROWS = 1 << 20

#: What parsing a damaged file may raise: pyelftools raises its own errors, and also assertion,
#: lookup and construct errors of its own making; a library's file is the target's, so any
#: failure means no line from that part of it.
_ERRORS = (Exception,)


class _Unit:
    """One compilation unit's rows: sorted addresses, and each row's file index and line; a
    line of 0 ends a sequence (no code of the unit at or past that address).  Kept in arrays:
    no objects for the garbage collector to walk."""

    def __init__(self, addresses: "array.array[int]", files_at: "array.array[int]",
                 lines: "array.array[int]", files: Dict[int, str]):
        self.addresses = addresses
        self.files_at = files_at
        self.lines = lines
        self.files = files

    def line(self, address: int) -> Optional[Tuple[str, int]]:
        i = bisect.bisect_right(self.addresses, address) - 1
        if i < 0:
            return None
        file, line = self.files_at[i], self.lines[i]
        if not line or file not in self.files:
            return None
        return self.files[file], line


class LineTable:
    """The DWARF line rows of one ELF file (or of its separate debug file), by address in the
    file (its ``st_value`` scale)."""

    def __init__(self, dwarf: Optional[DWARFInfo]):
        self._dwarf = dwarf
        self._units: Dict[int, Optional[_Unit]] = {}
        self._aranges = None
        if dwarf is not None:
            try:
                self._aranges = dwarf.get_aranges()
            except _ERRORS:
                self._aranges = None
            if self._aranges is None:
                self._dwarf = None  # no way to find an address's unit short of reading them all

    def line(self, address: int) -> Optional[Tuple[str, int]]:
        """(source file, line) of the instruction at ``address``, or None where not known;
        decodes its unit first if needed."""
        offset = self.unit_of(address)
        if offset is None:
            return None
        self.decode(offset)
        return self.ready_line(address, offset)[1]

    def unit_of(self, address: int) -> Optional[int]:
        """The offset of the compilation unit that holds ``address``; None: no unit does."""
        if self._dwarf is None or self._aranges is None:
            return None
        try:
            return self._aranges.cu_offset_at_addr(address)
        except _ERRORS:
            return None

    def ready_line(self, address: int, offset: int) -> Tuple[bool, Optional[Tuple[str, int]]]:
        """(whether unit ``offset`` is decoded, the line of ``address`` if so)."""
        if offset not in self._units:
            return False, None
        unit = self._units.get(offset)
        return True, unit.line(address) if unit is not None else None

    def decode(self, offset: int) -> None:
        """Decode unit ``offset`` unless done (the oldest one kept is forgotten past
        ``UNITS_KEPT``)."""
        if offset in self._units:
            return
        unit = self._decode(offset)
        while len(self._units) >= UNITS_KEPT:
            del self._units[next(iter(self._units))]
        self._units[offset] = unit

    def _decode(self, offset: int) -> Optional[_Unit]:
        dwarf = self._dwarf
        assert dwarf is not None
        try:
            cu = dwarf.get_CU_at(offset)
            program = dwarf.line_program_for_CU(cu)
            if program is None:
                return None
            top = cu.get_top_DIE()
            comp_dir = top.attributes.get("DW_AT_comp_dir")
            base = comp_dir.value if comp_dir is not None and isinstance(comp_dir.value, bytes) else b""
            files = _file_names(program.header, base)
            section = dwarf.debug_line_sec
            if section is None:
                return None
            stream = section.stream
            stream.seek(program.program_start_offset)
            code = stream.read(program.program_end_offset - program.program_start_offset)
            addresses, files_at, lines = _run(code, program.header)
        except _ERRORS:
            return None
        return _Unit(addresses, files_at, lines, files)


def _file_names(header, comp_dir: bytes) -> Dict[int, str]:
    """File index -> path, as the line program numbers them: from 0 in DWARF 5, from 1 before
    (where directory 0 is the unit's own directory)."""
    version = header["version"]
    dirs = [bytes(d) for d in header["include_directory"]]
    if version < 5:
        dirs = [comp_dir] + dirs
    first = 0 if version >= 5 else 1
    names = {}
    for i, entry in enumerate(header["file_entry"]):
        name = bytes(entry.name)
        directory = dirs[entry.dir_index] if 0 <= entry.dir_index < len(dirs) else b""
        if not name.startswith(b"/") and directory:
            name = directory.rstrip(b"/") + b"/" + name
        if not name.startswith(b"/") and comp_dir:
            name = comp_dir.rstrip(b"/") + b"/" + name
        names[first + i] = os.path.normpath(name.decode("utf-8", "replace"))
    return names


def leb128(code: bytes, at: int, signed: bool = False) -> Tuple[int, int]:
    """The LEB128 number at ``at`` and the offset past it."""
    value = shift = 0
    while True:
        byte = code[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if signed and byte & 0x40:
                value -= 1 << shift
            return value, at


def _run(code: bytes, header) -> Tuple["array.array[int]", "array.array[int]", "array.array[int]"]:
    """The rows of a line program (the DWARF 2-5 state machine, one operation per
    instruction as on x86-64), sorted by address, sequence ends before starts at one address."""
    unit = header["minimum_instruction_length"]
    line_base, line_range = header["line_base"], header["line_range"]
    opcode_base = header["opcode_base"]
    lengths = list(header["standard_opcode_lengths"])
    if line_range <= 0:
        return array.array("Q"), array.array("q"), array.array("q")
    const_add = ((255 - opcode_base) // line_range) * unit
    found: List[Tuple[int, int, int, int]] = []   # (address, start?, file, line: 0 ends)
    address, file, line = 0, 1, 1
    at, end = 0, len(code)
    while at < end and len(found) < MAX_ROWS:
        op = code[at]
        at += 1
        if op >= opcode_base:
            adjusted = op - opcode_base
            address += (adjusted // line_range) * unit
            line += line_base + adjusted % line_range
            found.append((address, 1, file, line))
        elif op == 0:  # extended
            length, at = leb128(code, at)
            if length == 0:
                continue
            sub, args = code[at], at + 1
            at += length
            if sub == 1:  # end_sequence
                found.append((address, 0, file, 0))
                address, file, line = 0, 1, 1
            elif sub == 2:  # set_address
                address = int.from_bytes(code[args:at], "little")
        elif op == 1:  # copy
            found.append((address, 1, file, line))
        elif op == 2:  # advance_pc
            step, at = leb128(code, at)
            address += step * unit
        elif op == 3:  # advance_line
            step, at = leb128(code, at, True)
            line += step
        elif op == 4:  # set_file
            file, at = leb128(code, at)
        elif op == 8:  # const_add_pc
            address += const_add
        elif op == 9:  # fixed_advance_pc
            address += int.from_bytes(code[at:at + 2], "little")
            at += 2
        else:  # an operation that changes no row here: skip its operands
            for _ in range(lengths[op - 1] if op - 1 < len(lengths) else 0):
                _, at = leb128(code, at)
    found.sort(key=lambda row: (row[0], row[1]))
    return (array.array("Q", [row[0] for row in found]), array.array("q", [row[2] for row in found]),
            array.array("q", [max(row[3], 0) for row in found]))


def _build_id(elf: ELFFile) -> Optional[str]:
    for section in elf.iter_sections():
        if not isinstance(section, NoteSection):
            continue
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID" and isinstance(note["n_desc"], str):
                return note["n_desc"]
    return None


def _debuglink(elf: ELFFile) -> Optional[str]:
    section = elf.get_section_by_name(".gnu_debuglink")
    if section is None:
        return None
    name = section.data().split(b"\0", 1)[0].decode("utf-8", "replace")
    return name if name and "/" not in name else None


def debug_file(elf: ELFFile, root: str, path: str) -> Optional[str]:
    """The separate debug file of the library at ``path`` in the target's view, found in the
    target's ``root`` (our path to its ``/``): by build id, then by debug link name."""
    try:
        return _debug_file(elf, root, path)
    except Exception:  # a damaged note or link section: no debug file
        return None


def _debug_file(elf: ELFFile, root: str, path: str) -> Optional[str]:
    candidates = []
    build_id = _build_id(elf)
    if build_id and len(build_id) > 2:
        candidates.append("%s/.build-id/%s/%s.debug" % (DEBUG_ROOT, build_id[:2], build_id[2:]))
    link = _debuglink(elf)
    if link:
        directory = os.path.dirname(path)
        candidates += [os.path.join(directory, link), os.path.join(directory, ".debug", link),
                       DEBUG_ROOT + os.path.join(directory, link)]
    for candidate in candidates:
        full = os.path.join(root, candidate.lstrip("/"))
        library = os.path.join(root, path.lstrip("/"))
        if os.path.isfile(full) and os.path.realpath(full) != os.path.realpath(library):
            return full
    return None


def line_table(image: ElfImage, debug: Optional[ElfImage]) -> LineTable:
    """The line table of the library ``image``: its own DWARF, else that of its separate
    ``debug`` file (see ``debug_file``), else none.  Reads only the DWARF sections both files
    hold in memory once ``dwarf()`` has read them, so it may run in another thread than the one
    reading the files themselves (their streams are not shared safely)."""
    for source in (image, debug):
        try:
            dwarf = source.dwarf() if source is not None else None
            if dwarf is not None and dwarf.debug_line_sec is not None:
                return LineTable(dwarf)
        except _ERRORS:
            pass
    return LineTable(None)
