"""ELF symbols and sections of the binary that holds the interpreter, via pyelftools.

Lookup order, cheapest first: ``.gnu.hash`` (holds every exported symbol, including the data
symbols we need: ``_PyRuntime``, ``Py_Version``, ``PyCode_Type``...), then ``.dynsym`` by name
(a linear scan, only when there is no ``.gnu.hash``), then ``.symtab`` (slower still; only when
the caller allows it, since it is the slow path for local symbols in unstripped builds).
Results are cached per file identity, so attaching many times to the same interpreter parses
its ELF once.

Addresses: a runtime address is ``st_value`` (or ``sh_addr``) plus the load bias, never
``sh_offset``: writable segments have vaddr != file offset (libpython3.13 ``.PyRuntime`` has
addr 0x5294c0 but offset 0x5284c0).  The bias is the start of the mapping at file offset 0 minus
the page-aligned ``p_vaddr`` of the first PT_LOAD: for a PIE exe or a .so that is the mapping
start; for Debian's non-PIE /usr/bin/python3.11 (first p_vaddr 0x400000, mapped there) it is 0.
"""

import collections
import io
import mmap
import os
from typing import BinaryIO, Dict, Iterable, Optional, Tuple, cast

from elftools.common.exceptions import ELFError
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DWARFInfo
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.hash import GNUHashSection
from elftools.elf.sections import Symbol, SymbolTableSection

from spyrec.process import MemoryMap

PAGE = 4096


class SectionView:
    """One section of a mapped file, read as pyelftools reads a section's stream, without a
    copy: ``getbuffer`` gives its bytes themselves, as ``io.BytesIO.getbuffer`` does
    (spyrec.elflines scans them)."""

    def __init__(self, data: memoryview):
        self._data = data
        self._at = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = (0, self._at, len(self._data))[whence]
        self._at = max(0, base + offset)
        return self._at

    def tell(self) -> int:
        return self._at

    def read(self, size: Optional[int] = -1) -> bytes:
        start = self._at
        end = len(self._data) if size is None or size < 0 else min(len(self._data), start + size)
        if start >= end:
            return b""
        self._at = end
        return self._data[start:end].tobytes()

    def getbuffer(self) -> memoryview:
        return self._data[:]  # (a view of its own: the caller may release it)


class _MappedElfFile(ELFFile):
    """pyelftools' ``ELFFile`` whose DWARF sections are views of the file mapped read-only,
    where pyelftools would copy each one into memory (``_read_dwarf_section``, pyelftools
    0.33): a library built with debug information carries tens of megabytes of them, of
    which the line tables of the units a recording meets are read.  Compressed sections are
    read as pyelftools reads them (decompressed into memory)."""

    def __init__(self, stream: BinaryIO, mapped: Optional[memoryview]):
        self._mapped = mapped
        super().__init__(stream)

    def _read_dwarf_section(self, section, relocate_dwarf_sections):
        offset, size = section["sh_offset"], section["sh_size"]
        if (self._mapped is None or relocate_dwarf_sections or self.has_phantom_bytes()
                or section["sh_type"] == "SHT_NOBITS"
                or section["sh_flags"] & SH_FLAGS.SHF_COMPRESSED
                or section.name.startswith(".zdebug") or offset + size > len(self._mapped)):
            return super()._read_dwarf_section(section, relocate_dwarf_sections)
        return DebugSectionDescriptor(stream=SectionView(self._mapped[offset:offset + size]),
                                      name=section.name, global_offset=offset, size=size,
                                      address=section["sh_addr"])


def _map_file(file: BinaryIO) -> Optional[memoryview]:
    """The whole of an open file mapped read-only, or None (empty, or not a file that maps).
    A file truncated while mapped would fault on a read past its new end; a library file
    mapped by the target faults the target the same way, and is replaced, not truncated."""
    try:
        return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    except (OSError, ValueError):
        return None


class ElfImage:
    """The symbols and sections of one ELF file, looked up lazily and memoised."""

    def __init__(self, path: str, data: Optional[bytes] = None):
        """The file at ``path``, or the image ``data`` (the kernel's vDSO, read from memory)
        named ``path``."""
        self.path = path
        self._file: BinaryIO = open(path, "rb") if data is None else io.BytesIO(data)
        try:
            self.elf: ELFFile = _MappedElfFile(self._file,
                                               _map_file(self._file) if data is None else None)
        except ELFError:
            self._file.close()
            raise
        loads = [seg for seg in self.elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
        self.first_load_vaddr = loads[0]["p_vaddr"] if loads else 0
        self._symbols: Dict[Tuple[str, bool], Optional[int]] = {}
        # pyelftools types get_section_by_name as returning a plain Section; it returns the
        # class of the section's type (sh_type SHT_GNU_HASH, SHT_DYNSYM, SHT_SYMTAB).
        self._gnu_hash = cast(Optional[GNUHashSection], self.elf.get_section_by_name(".gnu.hash"))
        self._dynsym = cast(Optional[SymbolTableSection], self.elf.get_section_by_name(".dynsym"))
        self._dwarf: Optional[DWARFInfo] = None
        self._dwarf_read = False

    def code_before(self, vaddr: int, size: int) -> bytes:
        """The ``size`` bytes of the file's loaded image just before address ``vaddr`` (its
        ``st_value`` scale); b"" where no loaded segment of the file holds them."""
        for segment in self.elf.iter_segments():
            if segment["p_type"] != "PT_LOAD":
                continue
            start = segment["p_vaddr"]
            if start + size <= vaddr <= start + segment["p_filesz"]:
                self._file.seek(segment["p_offset"] + vaddr - size - start)
                return self._file.read(size)
        return b""

    def dwarf(self) -> Optional[DWARFInfo]:
        """The file's DWARF sections (``.eh_frame`` and, where kept, the debug sections), read
        once for the unwinder and the line table; None when they do not parse."""
        if not self._dwarf_read:
            try:
                self._dwarf = self.elf.get_dwarf_info(relocate_dwarf_sections=False,
                                                      follow_links=False)
            except Exception:  # a library's file is the target's: any damage means no DWARF
                self._dwarf = None
            self._dwarf_read = True
        return self._dwarf

    def symbol(self, name: str, slow: bool = False) -> Optional[int]:
        """``st_value`` of a defined symbol (unbiased), or None.

        ``slow=True`` also searches ``.symtab`` (local symbols of unstripped builds, ~0.4 s).
        """
        key = (name, slow)
        if key not in self._symbols:
            self._symbols[key] = self._lookup(name, slow)
        return self._symbols[key]

    def _lookup(self, name: str, slow: bool) -> Optional[int]:
        if self._gnu_hash is not None:
            sym = self._gnu_hash.get_symbol(name)
            if sym is not None and _defined(sym):
                return sym["st_value"]
        elif self._dynsym is not None:
            for sym in self._dynsym.get_symbol_by_name(name) or ():
                if _defined(sym):
                    return sym["st_value"]
        if slow:
            symtab = cast(Optional[SymbolTableSection], self.elf.get_section_by_name(".symtab"))
            for sym in (symtab and symtab.get_symbol_by_name(name)) or ():
                if _defined(sym):
                    return sym["st_value"]
        return None

    def section(self, name: str) -> Optional[Tuple[int, int]]:
        """``(sh_addr, sh_size)`` of a section (unbiased), or None."""
        sec = self.elf.get_section_by_name(name)
        if sec is None or sec["sh_addr"] == 0:
            return None
        return sec["sh_addr"], sec["sh_size"]

    def load_bias(self, mappings: Iterable[MemoryMap]) -> int:
        """Bias of this file's image in a process, from the file's mappings there."""
        maps = sorted(mappings, key=lambda m: m.start)
        first = next((m for m in maps if m.offset == 0), None)
        if first is None:
            # Should not happen for a loaded ELF, but keep a defined answer: mapping start
            # minus its file offset, aligned like the first PT_LOAD.
            first = maps[0]
            return first.start - first.offset - (self.first_load_vaddr & ~(PAGE - 1))
        return first.start - (self.first_load_vaddr & ~(PAGE - 1))

    def close(self) -> None:
        self._file.close()


def _defined(sym: Optional[Symbol]) -> bool:
    return sym is not None and sym["st_shndx"] != "SHN_UNDEF" and sym["st_value"] != 0


#: Parsed ELF files by (device, inode, size, mtime), most recently used last.
_IMAGES: "collections.OrderedDict[tuple, ElfImage]" = collections.OrderedDict()
_IMAGES_KEPT = 16


def load_elf(path: str) -> ElfImage:
    """Open (or reuse) the parsed ELF file at ``path``.

    The cache key is the file's device, inode, size and mtime, not its path: each process's
    binary is opened through a path of its own (``/proc/PID/root/...``), and the workers of a
    pool share one.  A file replaced on disk is parsed again.  Raises OSError if the file
    cannot be opened and ELFError if it is not ELF.
    """
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    image = _IMAGES.get(key)
    if image is None:
        image = _IMAGES[key] = ElfImage(path)
        if len(_IMAGES) > _IMAGES_KEPT:
            _IMAGES.popitem(last=False)
    else:
        _IMAGES.move_to_end(key)
    return image
