"""What one ELF file tells a native unwinder: how to find each function's caller (its ``.eh_frame``
call-frame information) and the function's name (its symbols).

Every x86-64 binary carries ``.eh_frame`` (C++ exceptions and ``backtrace()`` need it, so it
survives ``strip`` and builds without frame pointers), and its ``.eh_frame_hdr`` holds a table
sorted by function start, so a function's unwind entry is found by bisection and parsed only
when first needed.  The rows of an entry are kept in the few numbers an unwinder uses
(``UnwindRow``).  Names come from ``.symtab`` where the file kept it, else ``.dynsym``; a
function neither names (a static function of a stripped library) is named by its start
address, which ``.eh_frame`` gives exactly.  C++ names are demangled (spyrec.cxxnames).
"""

import bisect
import struct
import weakref
from typing import Dict, List, NamedTuple, Optional, Tuple

from elftools.common.exceptions import ELFError
from elftools.dwarf.callframe import FDE, CallFrameInfo, RegisterRule

from spyrec.cxxnames import demangle
from spyrec.elflines import leb128
from spyrec.symbols import ElfImage

#: DWARF register numbers of x86-64 (System V psABI): the frame pointer, the stack pointer and
#: the return address column.
RBP, RSP, RA = 6, 7, 16
#: The CFA of a function that realigns its stack (GCC's "DRAP", as AVX-512 code does): kept in
#: the function's frame, read through the frame pointer (``DW_OP_breg6 N; DW_OP_deref``).
CFA_AT_RBP = -2
_DW_OP_BREG6, _DW_OP_DEREF = 0x76, 0x06
_DW_CFA_GNU_ARGS_SIZE = 0x2e
#: Unwind entries parsed and kept per file: a program spends its time in few functions.
ROWS_KEPT = 4096

_HDR = struct.Struct("<BBBB")
_SYMBOL = struct.Struct("<IBBHQQ")  # Elf64_Sym
STT_FUNC, STT_GNU_IFUNC = 2, 10


class UnwindRow(NamedTuple):
    """How to find the caller from an address in a function: the canonical frame address is
    register ``cfa_reg`` plus ``cfa_offset`` (``CFA_AT_RBP``: the value stored at ``rbp +
    cfa_offset``); the return address and the caller's frame pointer are saved at that address
    plus ``ra_at`` and ``rbp_at`` (None: not saved, the register keeps its value; for
    ``ra_at``, the outermost frame), or the frame pointer at ``rbp`` plus ``rbp_at_bp``."""

    cfa_reg: int  # RSP, RBP or CFA_AT_RBP; -1: a CFA this unwinder does not compute
    cfa_offset: int
    ra_at: Optional[int]
    rbp_at: Optional[int]
    rbp_at_bp: Optional[int] = None


def _offset(rule: Optional[RegisterRule]) -> Optional[int]:
    """Where a register rule says the register is saved, from the CFA; None: not saved there."""
    if rule is not None and rule.type == RegisterRule.OFFSET and isinstance(rule.arg, int):
        return rule.arg
    return None


def _from_rbp(expression, deref: bool) -> Optional[int]:
    """N of the DWARF expression ``DW_OP_breg6 N`` (followed by ``DW_OP_deref`` if
    ``deref``); None for any other expression."""
    try:
        code = bytes(expression)
        if not code or code[0] != _DW_OP_BREG6:
            return None
        value, at = leb128(code, 1, signed=True)
    except (TypeError, ValueError, IndexError):
        return None
    return value if code[at:] == (bytes((_DW_OP_DEREF,)) if deref else b"") else None


def _row(cfa, ra: Optional[RegisterRule], rbp: Optional[RegisterRule]) -> UnwindRow:
    """An UnwindRow of a decoded CFI row's CFA rule and return address and frame pointer rules."""
    reg, offset = -1, 0
    if cfa.expr is not None:
        at = _from_rbp(cfa.expr, deref=True)
        if at is not None:
            reg, offset = CFA_AT_RBP, at
    elif cfa.reg in (RSP, RBP):
        reg, offset = cfa.reg, cfa.offset
    rbp_at_bp = None
    if rbp is not None and rbp.type == RegisterRule.EXPRESSION:
        rbp_at_bp = _from_rbp(rbp.arg, deref=False)
    return UnwindRow(reg, offset, _offset(ra), _offset(rbp), rbp_at_bp)


class UnwindTable:
    """The ``.eh_frame`` of one file, looked up by (unbiased) address."""

    def __init__(self, image: ElfImage):
        elf = image.elf
        hdr = elf.get_section_by_name(".eh_frame_hdr")
        frame = elf.get_section_by_name(".eh_frame")
        self._starts: List[int] = []
        self._entries: List[int] = []  # offsets of the FDEs in .eh_frame
        self._cfi: Optional[CallFrameInfo] = None
        self._rows: Dict[int, Tuple[int, int, List[Tuple[int, UnwindRow]]]] = {}
        if hdr is None or frame is None:
            return
        try:
            dwarf = image.dwarf()
        except struct.error:
            return
        if dwarf is None or dwarf.eh_frame_sec is None:
            return
        self._cfi = CallFrameInfo(stream=dwarf.eh_frame_sec.stream, size=dwarf.eh_frame_sec.size,
                                  address=dwarf.eh_frame_sec.address,
                                  base_structs=dwarf.structs, for_eh_frame=True)
        self._frame_addr = frame["sh_addr"]
        self._read_hdr(hdr.data(), hdr["sh_addr"])

    def _read_hdr(self, data: bytes, hdr_addr: int) -> None:
        """The sorted (function start, FDE) table: in the encodings every toolchain writes
        (eh_frame_ptr pcrel sdata4, fde_count udata4, table datarel sdata4); another file's
        functions are not unwound."""
        if len(data) < 12:
            return
        version, ptr_enc, count_enc, table_enc = _HDR.unpack_from(data)
        if (version, ptr_enc, count_enc, table_enc) != (1, 0x1b, 0x03, 0x3b):
            return
        (count,) = struct.unpack_from("<I", data, 8)
        count = min(count, (len(data) - 12) // 8)
        pairs = struct.unpack_from("<%di" % (2 * count), data, 12)
        self._starts = [hdr_addr + start for start in pairs[0::2]]
        self._entries = [hdr_addr + entry - self._frame_addr for entry in pairs[1::2]]

    def row(self, address: int) -> Tuple[Optional[int], Optional[UnwindRow]]:
        """(start of the function holding ``address``, how to unwind from there), or
        (None, None) when no entry covers it."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0 or self._cfi is None:
            return None, None
        entry = self._rows.get(i)
        if entry is None:
            entry = self._parse(i)
            if entry is None:
                return None, None
            if len(self._rows) >= ROWS_KEPT:
                self._rows.clear()
            self._rows[i] = entry
        start, end, rows = entry
        if not start <= address < end:
            return None, None
        at = bisect.bisect_right(rows, (address, _LAST)) - 1
        return start, rows[at][1] if at >= 0 else None

    def _parse(self, i: int) -> Optional[Tuple[int, int, List[Tuple[int, UnwindRow]]]]:
        assert self._cfi is not None
        try:
            # one entry, as it is first needed (pyelftools' public EH_CFI_entries() parses
            # every entry of the file, most of a second for libpython)
            fde = self._cfi._parse_entry_at(self._entries[i])
            if not isinstance(fde, FDE):
                return None
            # DW_CFA_GNU_args_size (C++ code that pushes call arguments) moves no register, and
            # pyelftools 0.33 refuses to decode an entry holding it
            fde.instructions = [step for step in fde.instructions
                                if int(step.opcode) != _DW_CFA_GNU_ARGS_SIZE]
            table = fde.get_decoded().table
        except Exception:  # the target's file, maybe damaged: pyelftools may raise anything
            return None
        start = fde.header["initial_location"]
        rows = []
        for line in table:
            rows.append((line["pc"], _row(line["cfa"], line.get(RA), line.get(RBP))))
        return start, start + fde.header["address_range"], rows


#: Sorts after every UnwindRow at the same address (bisect key).
_LAST = UnwindRow(1 << 30, 0, None, None)


class SymbolTable:
    """The function symbols of one file, by (unbiased) address: its own, and those of its
    separate debug file, which keeps the ``.symtab`` that stripping took out of it (the static
    functions of a distribution's C library)."""

    def __init__(self, image: ElfImage, debug: Optional[ElfImage] = None):
        found: Dict[int, Tuple[int, int, object]] = {}
        tables = [(image.elf, ".dynsym"), (image.elf, ".symtab")]
        if debug is not None:
            tables.append((debug.elf, ".symtab"))
        for elf, name in tables:
            section = elf.get_section_by_name(name)
            if section is None or section["sh_entsize"] != _SYMBOL.size:
                continue
            try:
                strings = elf.get_section(section["sh_link"])
                data = section.data()
            except (ELFError, IndexError):
                continue
            own = elf is image.elf
            for st_name, info, _, shndx, value, size in _SYMBOL.iter_unpack(
                    data[:len(data) - len(data) % _SYMBOL.size]):
                if info & 0xf in (STT_FUNC, STT_GNU_IFUNC) and shndx and value:
                    # one name per address: a global name over a local alias, the file's own
                    # over the debug file's (which may carry a version: clock_nanosleep@@GLIBC_2.17)
                    if value not in found or own and info >> 4 == 1:
                        found[value] = (size, st_name, strings)
        self._values = sorted(found)
        self._found = found
        self._names: Dict[int, str] = {}

    def name(self, address: int, start: Optional[int]) -> Optional[str]:
        """The name of the function holding ``address`` (``start``: where its unwind entry
        says it starts, when known: a symbol before that is another function's)."""
        i = bisect.bisect_right(self._values, address) - 1
        if i < 0:
            return None
        value = self._values[i]
        size, st_name, strings = self._found[value]
        if start is not None and value < start or size and address >= value + size:
            return None
        name = self._names.get(value)
        if name is None:
            try:
                raw = strings.get_string(st_name)  # type: ignore[attr-defined]
            except (ELFError, UnicodeDecodeError, AttributeError):
                raw = ""
            raw = raw.split("@", 1)[0] if not raw.startswith("@") else raw  # a version: not a name
            name = self._names[value] = demangle(raw) if raw else "0x%x" % value
        return name


class ElfUnwind(NamedTuple):
    table: UnwindTable
    symbols: SymbolTable


_UNWINDS: "weakref.WeakKeyDictionary[ElfImage, ElfUnwind]" = weakref.WeakKeyDictionary()


def unwind_info(image: ElfImage, debug: Optional[ElfImage] = None) -> ElfUnwind:
    """The unwind table and symbols of a parsed file (and of its separate ``debug`` file's
    symbol table), kept as long as the file is (see ``spyrec.symbols.load_elf``)."""
    info = _UNWINDS.get(image)
    if info is None:
        info = _UNWINDS[image] = ElfUnwind(UnwindTable(image), SymbolTable(image, debug))
    return info
