"""The source file and line of an address in native code, from the DWARF line table.

A build with debug information (CPython's own, by default; extension modules built with ``-g``)
carries ``.debug_line`` in the file; a distribution strips it into a separate file, installed
with its ``-dbg``/``-dbgsym`` package under ``/usr/lib/debug``, found by the library's build id
or its ``.gnu_debuglink`` name, in the target's own root.  Only the compilation unit holding an
address is decoded (``.debug_aranges`` says which), once, into sorted rows.  pyelftools parses
the headers; the line program itself is decoded here: pyelftools makes an object per opcode,
several times slower on the interpreter's largest unit (Python/ceval.c).

Code a compiler inlined into a function is a frame of its own to the reader, as a debugger
shows it: the unit's ``DW_TAG_inlined_subroutine`` entries (in ``.debug_info``) say which
addresses each inlined call covers, what it calls and from which line, and ``frames`` gives
an address's chain of them.
"""

import array
import bisect
import os
from typing import Dict, List, Optional, Tuple, Union

from elftools.dwarf.dwarfinfo import DWARFInfo
from elftools.dwarf.ranges import BaseAddressEntry
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from spyformat.records import LINE_LIMIT
from spyrec.cxxnames import demangle
from spyrec.symbols import ElfImage

#: Where distributions install separate debug files (by build id, or by the library's path).
DEBUG_ROOT = "/usr/lib/debug"
#: Compilation units decoded and kept per file.
UNITS_KEPT = 512
#: Rows decoded from one unit at most (a hostile or damaged file stops there).
MAX_ROWS = 1 << 20
#: Inlined calls read from one unit at most, and how many references a name is followed through.
MAX_INLINED = 1 << 17
NAME_HOPS = 4

#: What parsing a damaged file may raise: pyelftools raises its own errors, and also assertion,
#: lookup and construct errors of its own making; a library's file is the target's, so any
#: failure means no line from that part of it.
_ERRORS = (Exception,)


#: Where an address is, innermost first: (the name of the function inlined there, or None for
#: the function the symbols name, its source file, its line).
Place = Tuple[Optional[str], str, int]


class _Inlined:
    """The calls inlined into one unit's code: for each stretch of addresses (``starts``,
    sorted), the inlined calls that cover it, outermost first (``chains``: indexes into the
    calls' ``names``, ``call_files`` and ``call_lines``: what each calls, and from where)."""

    def __init__(self, starts: "array.array[int]", chains: List[Tuple[int, ...]], names: List[str],
                 call_files: "array.array[int]", call_lines: "array.array[int]"):
        self.starts = starts
        self.chains = chains
        self.names = names
        self.call_files = call_files
        self.call_lines = call_lines

    def chain(self, address: int) -> Tuple[int, ...]:
        i = bisect.bisect_right(self.starts, address) - 1
        return self.chains[i] if i >= 0 else ()


class _Unit:
    """One compilation unit's rows: sorted addresses, and each row's file index and line; a
    line of 0 ends a sequence (no code of the unit at or past that address).  Kept in arrays:
    no objects for the garbage collector to walk.  With the calls inlined into its code."""

    def __init__(self, addresses: "array.array[int]", files_at: "array.array[int]",
                 lines: "array.array[int]", files: Dict[int, str],
                 inlined: Optional[_Inlined] = None):
        self.addresses = addresses
        self.files_at = files_at
        self.lines = lines
        self.files = files
        self.inlined = inlined

    def frames(self, address: int) -> Optional[Tuple[Place, ...]]:
        """The places of ``address`` (see ``Place``): where code was inlined, one for each
        inlined function (at its line) and one for each caller (at the line of the call);
        None where the unit knows neither its line nor an inlined call there."""
        place = self.line(address)
        chain = self.inlined.chain(address) if self.inlined is not None else ()
        if not chain:
            return None if place is None else ((None,) + place,)
        inlined = self.inlined
        assert inlined is not None
        source, line = place if place is not None else ("", 0)
        found: List[Place] = [(inlined.names[chain[-1]], source, line)]
        for k in range(len(chain) - 1, -1, -1):
            call = chain[k]
            found.append((inlined.names[chain[k - 1]] if k else None,
                          self.files.get(inlined.call_files[call], ""), inlined.call_lines[call]))
        return tuple(found)

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

    def frames(self, address: int) -> Optional[Tuple[Place, ...]]:
        """The places of ``address`` (see ``_Unit.frames``), decoding its unit first if needed."""
        offset = self.unit_of(address)
        if offset is None:
            return None
        self.decode(offset)
        return self.ready_frames(address, offset)[1]

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

    def ready_frames(self, address: int, offset: int) -> Tuple[bool, Optional[Tuple[Place, ...]]]:
        """(whether unit ``offset`` is decoded, the places of ``address`` if so: see
        ``_Unit.frames``)."""
        if offset not in self._units:
            return False, None
        unit = self._units.get(offset)
        return True, unit.frames(address) if unit is not None else None

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
        return _Unit(addresses, files_at, lines, files, _inlined(dwarf, cu))


def _inlined(dwarf: DWARFInfo, cu) -> Optional[_Inlined]:
    """The calls inlined into unit ``cu``'s code, None where it has none or they do not parse.
    A unit's entries come in tree order, so of the calls covering one address, an outer one
    comes before those inlined into it."""
    try:
        calls = _inlined_calls(dwarf, cu)
    except _ERRORS:
        return None
    finally:
        cu._dielist, cu._diemap = [], []  # pyelftools' parsed entries: read once, not kept
    if not calls:
        return None
    events = sorted((address, starts, i) for i, (ranges, *_) in enumerate(calls)
                    for low, high in ranges if high > low
                    for address, starts in ((low, 1), (high, 0)))
    active: Dict[int, int] = {}
    starts = array.array("Q")
    chains: List[Tuple[int, ...]] = []
    interned: Dict[Tuple[int, ...], Tuple[int, ...]] = {}
    for address, begins, i in events:
        if begins:
            active[i] = active.get(i, 0) + 1
        elif active.get(i, 0) > 1:
            active[i] -= 1
        else:
            active.pop(i, None)
        chain = tuple(sorted(active))
        chain = interned.setdefault(chain, chain)
        if starts and starts[-1] == address:
            chains[-1] = chain
        else:
            starts.append(address)
            chains.append(chain)
    return _Inlined(starts, chains, [name for _, name, _, _ in calls],
                    array.array("q", [file for _, _, file, _ in calls]),
                    array.array("q", [line for _, _, _, line in calls]))


def _inlined_calls(dwarf: DWARFInfo, cu) -> List[Tuple[List[Tuple[int, int]], str, int, int]]:
    """(address ranges, the inlined function's name, call file index, call line) of each
    ``DW_TAG_inlined_subroutine`` of ``cu`` that has a name and code.  Their attributes are
    read here where their forms are plain (what GCC and Clang write without split DWARF), by
    pyelftools otherwise."""
    top = cu.get_top_DIE()
    low = top.attributes.get("DW_AT_low_pc")
    base = low.value if low is not None else 0
    names: Dict[int, Optional[str]] = {}
    range_lists = None
    calls = []
    found = _entries_of_tag(dwarf, cu, "DW_TAG_inlined_subroutine")
    entries = found if found is not None else [
        (die.offset, None) for die in cu.iter_DIEs() if die.tag == "DW_TAG_inlined_subroutine"]
    for offset, plain in entries:
        ranges: Optional[List[Tuple[int, int]]] = None
        if plain is not None and "DW_AT_abstract_origin" in plain:
            form, origin = plain["DW_AT_abstract_origin"]
            origin += 0 if form == "DW_FORM_ref_addr" else cu.cu_offset
            name = names.get(origin, "")
            if name == "":
                name = _name_of(dwarf.get_DIE_from_refaddr(origin), names, 1)
                names[origin] = name
            if "DW_AT_ranges" in plain:
                ranges = _range_list(dwarf, cu, plain["DW_AT_ranges"][1], base)
            elif "DW_AT_low_pc" in plain:
                start = plain["DW_AT_low_pc"][1]
                form, high = plain.get("DW_AT_high_pc", ("", None))
                ranges = [(start, start + 1 if high is None else
                           high if form == "DW_FORM_addr" else start + high)]
            file, line = plain.get("DW_AT_call_file", ("", -1))[1], plain.get("DW_AT_call_line", ("", 0))[1]
        if ranges is None:  # (forms read through other sections: pyelftools translates them)
            die = cu.get_DIE_from_refaddr(offset)
            attributes = die.attributes
            if "DW_AT_ranges" in attributes:
                if range_lists is None:
                    range_lists = dwarf.range_lists()
                    if range_lists is None:
                        continue
                ranges = _ranges(range_lists, attributes["DW_AT_ranges"].value, cu, base)
            elif "DW_AT_low_pc" in attributes:
                start = attributes["DW_AT_low_pc"].value
                high = attributes.get("DW_AT_high_pc")
                ranges = [(start, start + 1 if high is None else high.value
                           if high.form in ("DW_FORM_addr", "DW_FORM_addrx") else start + high.value)]
            else:
                continue
            name = _name_of(die, names, 0)
            file = attributes["DW_AT_call_file"].value if "DW_AT_call_file" in attributes else -1
            line = attributes["DW_AT_call_line"].value if "DW_AT_call_line" in attributes else 0
        if not ranges or name is None:
            continue
        if not 0 <= line < LINE_LIMIT:  # (malformed: 0 is a call line not known)
            line = 0
        calls.append((ranges, name, file, line))
        if len(calls) >= MAX_INLINED:
            break
    return calls


#: The attributes of an inlined call read without pyelftools, and the forms read so.
_PLAIN_ATTRIBUTES = {"DW_AT_abstract_origin", "DW_AT_low_pc", "DW_AT_high_pc", "DW_AT_ranges",
                     "DW_AT_call_file", "DW_AT_call_line"}
_PLAIN_FORMS = {"DW_FORM_addr", "DW_FORM_data1", "DW_FORM_data2", "DW_FORM_data4", "DW_FORM_data8",
                "DW_FORM_udata", "DW_FORM_sec_offset", "DW_FORM_ref1", "DW_FORM_ref2",
                "DW_FORM_ref4", "DW_FORM_ref8", "DW_FORM_ref_udata", "DW_FORM_ref_addr",
                "DW_FORM_implicit_const"}
#: .debug_rnglists entry kinds (DWARF 5, section 7.25).
_RLE_END, _RLE_OFFSET_PAIR, _RLE_BASE, _RLE_START_END, _RLE_START_LENGTH = 0, 4, 5, 6, 7


def _range_list(dwarf: DWARFInfo, cu, offset: int, base: int) -> Optional[List[Tuple[int, int]]]:
    """The address ranges of the ``DW_AT_ranges`` list at ``offset`` (``.debug_ranges`` up to
    DWARF 4, ``.debug_rnglists`` from 5), made absolute; None where it holds an entry read
    through ``.debug_addr`` (pyelftools reads those)."""
    size = cu["address_size"]
    v5 = cu.header["version"] >= 5
    section = dwarf.debug_rnglists_sec if v5 else dwarf.debug_ranges_sec
    if section is None or not hasattr(section.stream, "getbuffer"):
        return None
    ranges: List[Tuple[int, int]] = []
    with section.stream.getbuffer() as data:
        at = offset
        for _ in range(MAX_INLINED):
            if not v5:
                begin = int.from_bytes(data[at:at + size], "little")
                end = int.from_bytes(data[at + size:at + 2 * size], "little")
                at += 2 * size
                if not begin and not end:
                    return ranges
                if begin == (1 << (8 * size)) - 1:
                    base = end
                else:
                    ranges.append((base + begin, base + end))
                continue
            kind = data[at]
            at += 1
            if kind == _RLE_END:
                return ranges
            if kind == _RLE_OFFSET_PAIR:
                begin, at = leb128(data, at)
                end, at = leb128(data, at)
                ranges.append((base + begin, base + end))
            elif kind == _RLE_BASE:
                base = int.from_bytes(data[at:at + size], "little")
                at += size
            elif kind == _RLE_START_END:
                ranges.append((int.from_bytes(data[at:at + size], "little"),
                               int.from_bytes(data[at + size:at + 2 * size], "little")))
                at += 2 * size
            elif kind == _RLE_START_LENGTH:
                begin = int.from_bytes(data[at:at + size], "little")
                length, at = leb128(data, at + size)
                ranges.append((begin, begin + length))
            else:
                return None
    return ranges


#: Bytes of each attribute form of fixed size (DWARF 5, section 7.5.6), given the unit's
#: address and offset sizes; the forms of variable size are in ``_VARIABLE_FORMS``.
_FIXED_FORMS: Dict[str, Union[int, str]] = {
    "DW_FORM_data1": 1, "DW_FORM_ref1": 1, "DW_FORM_flag": 1, "DW_FORM_strx1": 1, "DW_FORM_addrx1": 1,
    "DW_FORM_data2": 2, "DW_FORM_ref2": 2, "DW_FORM_strx2": 2, "DW_FORM_addrx2": 2,
    "DW_FORM_strx3": 3, "DW_FORM_addrx3": 3,
    "DW_FORM_data4": 4, "DW_FORM_ref4": 4, "DW_FORM_ref_sup4": 4, "DW_FORM_strx4": 4,
    "DW_FORM_addrx4": 4,
    "DW_FORM_data8": 8, "DW_FORM_ref8": 8, "DW_FORM_ref_sig8": 8, "DW_FORM_ref_sup8": 8,
    "DW_FORM_data16": 16, "DW_FORM_flag_present": 0, "DW_FORM_implicit_const": 0,
    "DW_FORM_addr": "address", "DW_FORM_ref_addr": "offset", "DW_FORM_strp": "offset",
    "DW_FORM_sec_offset": "offset", "DW_FORM_line_strp": "offset", "DW_FORM_strp_sup": "offset",
    "DW_FORM_GNU_ref_alt": "offset", "DW_FORM_GNU_strp_alt": "offset",
}
#: Forms of variable size: a LEB128 number, a NUL-terminated string, a block after its length.
_LEB, _STRING, _BLOCK, _BLOCK1, _BLOCK2, _BLOCK4 = range(6)
_VARIABLE_FORMS = {
    "DW_FORM_udata": _LEB, "DW_FORM_sdata": _LEB, "DW_FORM_ref_udata": _LEB, "DW_FORM_strx": _LEB,
    "DW_FORM_addrx": _LEB, "DW_FORM_loclistx": _LEB, "DW_FORM_rnglistx": _LEB,
    "DW_FORM_GNU_addr_index": _LEB, "DW_FORM_GNU_str_index": _LEB, "DW_FORM_string": _STRING,
    "DW_FORM_exprloc": _BLOCK, "DW_FORM_block": _BLOCK, "DW_FORM_block1": _BLOCK1,
    "DW_FORM_block2": _BLOCK2, "DW_FORM_block4": _BLOCK4,
}
#: An abbreviation's plan: whether its entries are wanted, then the bytes to step over (fixed
#: sizes, and the kind of each variable one after them), and for a wanted one, its attributes
#: (name, form, size or variable kind, implicit value) when all those read are plain.
_Plan = Tuple[bool, List[Tuple[int, int]], int, Optional[List[Tuple[str, str, Union[int, str], int]]]]
#: What a wanted entry's plain attributes come out as: {name: (form, value)}.
Plain = Dict[str, Tuple[str, int]]


def _entries_of_tag(dwarf: DWARFInfo, cu, tag: str) -> Optional[List[Tuple[int, Optional[Plain]]]]:
    """The offsets of ``cu``'s entries of ``tag``, with their plain attributes
    (``_PLAIN_ATTRIBUTES``, None where one has another form), found by stepping over the
    other entries' bytes (pyelftools parses every attribute of every entry, several times
    slower); None where an abbreviation holds a form not sized here (the caller parses them
    all then)."""
    section = dwarf.debug_info_sec
    if section is None or not hasattr(section.stream, "getbuffer"):
        return None
    sizes = {"address": cu["address_size"], "offset": 8 if cu.dwarf_format() == 64 else 4}
    plans: Dict[int, _Plan] = {}
    abbreviations = getattr(cu.get_abbrev_table(), "_abbrev_map", None)
    if not isinstance(abbreviations, dict):
        return None
    for code, abbrev in abbreviations.items():
        steps, fixed = [], 0
        specs: Optional[List[Tuple[str, str, Union[int, str], int]]] = []
        for spec in abbrev["attr_spec"]:
            form = spec.form
            size = _FIXED_FORMS.get(form)
            if size is not None:
                fixed += sizes[size] if isinstance(size, str) else size
            elif form in _VARIABLE_FORMS:
                steps.append((fixed, _VARIABLE_FORMS[form]))
                fixed = 0
            else:
                return None
            if specs is not None:
                if spec.name in _PLAIN_ATTRIBUTES and form not in _PLAIN_FORMS:
                    specs = None
                else:
                    measure: Union[int, str] = (_VARIABLE_FORMS[form] if size is None else
                                                sizes[size] if isinstance(size, str) else size)
                    specs.append((spec.name, form, measure, getattr(spec, "value", 0) or 0))
        wanted = abbrev["tag"] == tag
        plans[code] = (wanted, steps, fixed, specs if wanted else None)
    with section.stream.getbuffer() as data:
        return _scan(data, cu.cu_die_offset, min(cu.cu_offset + cu.size, len(data)), plans)


def _scan(data, at: int, end: int, plans: Dict[int, _Plan]
          ) -> Optional[List[Tuple[int, Optional[Plain]]]]:
    """The wanted entries from ``at`` to ``end`` (see _entries_of_tag)."""
    found: List[Tuple[int, Optional[Plain]]] = []
    while at < end:
        start = at
        code, at = leb128(data, at)
        if not code:
            continue
        plan = plans.get(code)
        if plan is None:
            return None
        wanted, steps, fixed, specs = plan
        if wanted:
            plain: Optional[Plain] = None
            if specs is not None:
                plain = {}
                for name, form, size, implicit in specs:
                    value, at = _value(data, at, form, size, implicit)
                    if name in _PLAIN_ATTRIBUTES:
                        plain[name] = (form, value)
                found.append((start, plain))
                continue
            found.append((start, None))
        for skip, kind in steps:
            at += skip
            at = _past(data, at, kind)
        at += fixed
    return found


def _past(data, at: int, kind: int) -> int:
    """The offset past a value of variable size (``_VARIABLE_FORMS``) at ``at``."""
    if kind == _LEB:
        while data[at] & 0x80:
            at += 1
        return at + 1
    if kind == _STRING:
        while data[at]:
            at += 1
        return at + 1
    if kind == _BLOCK:
        length, at = leb128(data, at)
        return at + length
    width = (1, 2, 4)[kind - _BLOCK1]
    return at + width + int.from_bytes(data[at:at + width], "little")


def _value(data, at: int, form: str, size: Union[int, str], implicit: int) -> Tuple[int, int]:
    """(the value of an attribute as an unsigned number, 0 for one that is none, the offset
    past it), ``size`` being its fixed size or its variable kind (see _entries_of_tag)."""
    if form == "DW_FORM_implicit_const":
        return implicit, at
    if form in _VARIABLE_FORMS:
        if size == _LEB and form != "DW_FORM_sdata":
            return leb128(data, at)
        return 0, _past(data, at, int(size))
    width = int(size)
    return int.from_bytes(data[at:at + width], "little"), at + width


def _ranges(range_lists, offset: int, cu, base: int) -> List[Tuple[int, int]]:
    """The address ranges of a ``DW_AT_ranges`` list (``.debug_ranges`` or
    ``.debug_rnglists``), made absolute."""
    ranges = []
    for entry in range_lists.get_range_list_at_offset(offset, cu=cu):
        if isinstance(entry, BaseAddressEntry):
            base = entry.base_address
        elif entry.is_absolute:
            ranges.append((entry.begin_offset, entry.end_offset))
        else:
            ranges.append((base + entry.begin_offset, base + entry.end_offset))
    return ranges


def _name_of(die, names: Dict[int, Optional[str]], hops: int) -> Optional[str]:
    """The name of the function an entry is (or is an instance of): its C++ linkage name
    demangled, else its name, else that of the entry it refers to."""
    known = names.get(die.offset, "")
    if known != "":
        return known
    attributes = die.attributes
    name = None
    linkage = attributes.get("DW_AT_linkage_name") or attributes.get("DW_AT_MIPS_linkage_name")
    if linkage is not None and isinstance(linkage.value, bytes):
        name = demangle(linkage.value.decode("utf-8", "replace"))
    elif "DW_AT_name" in attributes and isinstance(attributes["DW_AT_name"].value, bytes):
        name = attributes["DW_AT_name"].value.decode("utf-8", "replace")
    elif hops < NAME_HOPS:
        for reference in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if reference in attributes:
                name = _name_of(die.get_DIE_from_attribute(reference), names, hops + 1)
                break
    names[die.offset] = name
    return name


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
            array.array("q", [row[3] if 0 < row[3] < LINE_LIMIT else 0 for row in found]))


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
