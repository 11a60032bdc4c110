"""Finding the interpreter in a process: the file that holds ``_PyRuntime``, its address, the
Python version, and the layout to read it with.

1. The runtime lives in ``libpython3.N*.so`` when one is mapped (shared builds, uv/standalone
   builds, embedders), else in the executable (static builds such as Debian's python3.11).
2. ``_PyRuntime`` is a data symbol (``.gnu.hash`` / ``.dynsym``), else the start of the
   ``.PyRuntime`` section (3.10+), else a ``.symtab`` symbol, else (3.13+) the ``xdebugpy``
   cookie found in the file's writable mappings; address = st_value / sh_addr + load bias.
3. Version, best first: the ``xdebugpy`` cookie + PY_VERSION_HEX at ``_PyRuntime`` (3.13+); the
   ``Py_Version`` symbol (3.11+); the minor from the file name (``libpython3.9.so``,
   ``python3.9``) plus the version buffer ``Py_GetVersion()`` fills in ``.bss`` (e.g. ``3.9.18
   (main, ...``) for the micro.  A layout is only accepted after one thread state has been read
   back consistently (see spyrec.validation).
"""

import os
import re
import struct
from typing import Dict, List, NamedTuple, Optional, Tuple

from elftools.common.exceptions import ELFError

from spyrec.errors import MemoryReadError, NotPython, UnsupportedPython
from spyrec.layouts import debug_offsets_size, layout_for, supported_range
from spyrec.layouts.base import Layout
from spyrec.process import MemoryMap, TargetMemory, read_maps, target_file, target_view
from spyrec.symbols import ElfImage, load_elf

_LIBPYTHON = re.compile(r"^libpython(\d+)\.(\d+)([a-z]*)\.so")
_EXE_NAME = re.compile(r"^python(\d+)(?:\.(\d+))?([a-z]*)$")
#: Py_GetVersion()'s buffer: "3.9.18 (main, May  9 2026, 07:33:49) \n[GCC 12.2.0]".
_VERSION_BUFFER = re.compile(rb"(?<![\w.+])(\d)\.(\d{1,2})\.(\d{1,2})((?:a|b|rc)\d{1,2})?\+? \(")
_RELEASE_LEVELS = {0xA: "a", 0xB: "b", 0xC: "rc", 0xF: ""}
_U64 = struct.Struct("<Q")


def version_from_hex(value: int) -> Tuple[Tuple[int, int, int], str]:
    """PY_VERSION_HEX -> ((major, minor, micro), "3.13.0rc1")."""
    major, minor, micro = value >> 24, (value >> 16) & 0xFF, (value >> 8) & 0xFF
    level, serial = (value >> 4) & 0xF, value & 0xF
    text = "%d.%d.%d" % (major, minor, micro)
    if level != 0xF:
        text += "%s%d" % (_RELEASE_LEVELS.get(level, "?"), serial)
    return (major, minor, micro), text


class RuntimeFile:
    """The mapped ELF file that holds ``_PyRuntime``, and where it is loaded."""

    def __init__(self, pid: int, path: str, mappings: List[MemoryMap]):
        self.path = target_view(pid, path)  # as the target sees it (" (deleted)" stripped)
        self.mappings = mappings
        self.name = os.path.basename(path)
        self.elf: ElfImage = load_elf(target_file(pid, mappings[0]))
        self.bias = self.elf.load_bias(mappings)

    def address(self, symbol: str) -> Optional[int]:
        value = self.elf.symbol(symbol)
        return None if value is None else value + self.bias

    def name_version(self) -> Tuple[Optional[int], Optional[int], str]:
        """(major, minor, abi flags) from ``libpython3.9d.so`` / ``python3.9``; None if absent."""
        m = _LIBPYTHON.match(self.name) or _EXE_NAME.match(self.name)
        if not m:
            return None, None, ""
        return int(m.group(1)), (int(m.group(2)) if m.group(2) else None), m.group(3) or ""


class Interpreter(NamedTuple):
    """What ``find_interpreter`` found in a process."""

    runtime_file: RuntimeFile
    runtime: int  # the address of _PyRuntime
    version: Tuple[int, int, int]
    version_string: str
    layout: Layout
    maps: List[MemoryMap]


def find_interpreter(pid: int, mem: TargetMemory, exe: str) -> Interpreter:
    """The CPython in process ``pid``; NotPython or UnsupportedPython, each with a one-line
    message naming the version when one was found."""
    maps = read_maps(pid)
    try:
        rf = find_runtime_file(pid, maps, exe)
    except (OSError, ELFError) as exc:
        raise NotPython("process %d (%s): cannot read its binary: %s" % (pid, exe, exc))
    major, minor, flags = rf.name_version()
    if major is not None and major < 3 or (major == 3 and minor is not None and minor < 8):
        _, text = scan_version_buffer(mem, rf, minor)
        raise UnsupportedPython("Python %s is not supported: it is older than the versions "
                                "spyrec reads (CPython %s)"
                                % (text or "%d.%d" % (major, minor or 0), supported_range()))
    runtime = locate_runtime(mem, rf)
    if runtime is None:
        if major is None:
            raise NotPython("process %d (%s) is not a CPython interpreter: no libpython is "
                            "mapped and the executable has no _PyRuntime" % (pid, exe))
        raise UnsupportedPython("process %d (%s): found no _PyRuntime in %s (a CPython "
                                "older than 3.7, or stripped of its symbols?)"
                                % (pid, exe, rf.path))
    if "d" in flags:
        raise UnsupportedPython("process %d runs a debug build of Python (%s), whose object "
                                "layout spyrec does not know" % (pid, rf.name))
    if "t" in flags:
        raise UnsupportedPython("process %d runs a free-threaded build of Python (%s), which "
                                "spyrec cannot walk yet" % (pid, rf.name))
    version, version_string = detect_version(mem, rf, runtime, minor)
    if version is None:
        raise UnsupportedPython("process %d (%s): cannot tell which Python version %s is"
                                % (pid, exe, rf.path))
    size = debug_offsets_size(version, version_string)
    try:
        blob = mem.read(runtime, size) if size else None
    except MemoryReadError:
        # Right after an exec the kernel may not have mapped the data segment yet (launch
        # mode retries NotPython); a process that stays like this is not a sane CPython.
        raise NotPython("process %d (%s): _PyRuntime at %#x is not readable (yet)"
                        % (pid, exe, runtime)) from None
    layout = layout_for(version, version_string, blob)
    return Interpreter(rf, runtime, version, version_string, layout, maps)


def find_runtime_file(pid: int, maps: List[MemoryMap], exe: str) -> RuntimeFile:
    by_path: Dict[str, List[MemoryMap]] = {}
    for m in maps:
        # (a shared mapping is never the loader's: a file the program maps as data, as a tool
        # that reads libraries does, spyrec itself among them)
        if m.path.startswith("/") and not m.perms.endswith("s"):
            by_path.setdefault(m.path, []).append(m)
    for path, mappings in by_path.items():
        # loaded, its code mapped executable (not only mapped as data)
        if _LIBPYTHON.match(os.path.basename(path)) and any("x" in m.perms for m in mappings):
            return RuntimeFile(pid, path.replace(" (deleted)", ""), mappings)
    exe_maps = by_path.get(exe) or by_path.get(exe + " (deleted)")
    if not exe_maps:
        raise NotPython("process %d (%s) has no file mappings we can read" % (pid, exe))
    return RuntimeFile(pid, exe.replace(" (deleted)", ""), exe_maps)

def locate_runtime(mem: TargetMemory, rf: RuntimeFile) -> Optional[int]:
    """Address of ``_PyRuntime``: exported symbol, ``.PyRuntime`` section (3.10+), ``.symtab``
    (unstripped builds that do not export it, ~0.4 s), or, for 3.13+ binaries without any of
    these, the ``xdebugpy`` cookie in a writable mapping of the file (8-aligned, followed by a
    version word whose top byte is the major version 3; libpython3.13 also holds the 8 bytes
    unaligned in ``.text``, hence both checks)."""
    runtime = rf.address("_PyRuntime")
    if runtime is not None:
        return runtime
    section = rf.elf.section(".PyRuntime")
    if section is not None:
        return section[0] + rf.bias
    value = rf.elf.symbol("_PyRuntime", slow=True)
    if value is not None:
        return value + rf.bias
    for m in rf.mappings:
        if "w" not in m.perms or m.end - m.start > 64 << 20:
            continue
        try:
            data = mem.read(m.start, m.end - m.start)
        except MemoryReadError:
            continue
        at = data.find(b"xdebugpy")
        while at >= 0:
            if at % 8 == 0 and len(data) >= at + 16 and data[at + 15] == 3:
                return m.start + at
            at = data.find(b"xdebugpy", at + 1)
    return None

def detect_version(mem: TargetMemory, rf: RuntimeFile, runtime: int, minor: Optional[int]):
    """((major, minor, micro), text) by the best available method, or (None, "")."""
    try:
        head = mem.read(runtime, 16)
        if head[:8] == b"xdebugpy":
            return version_from_hex(_U64.unpack_from(head, 8)[0])
    except MemoryReadError:
        pass
    py_version = rf.address("Py_Version")
    if py_version is not None:
        try:
            return version_from_hex(_U64.unpack(mem.read(py_version, 8))[0])
        except MemoryReadError:
            pass
    version, text = scan_version_buffer(mem, rf, minor)
    if version is not None:
        return version, text
    if minor is not None:
        return (3, minor, 0), "3.%d" % minor
    return None, ""

def scan_version_buffer(mem: TargetMemory, rf: RuntimeFile, minor: Optional[int]):
    """Find ``Py_GetVersion()``'s static buffer in .bss (3.8-3.10 have no Py_Version).

    It can false-match (py-spy #731 found "3.8.3 or higher" in a libpython), so the match must
    start a NUL-delimited string, agree with the file-name minor when there is one, and the
    layout it selects is validated by a walk afterwards.
    """
    section = rf.elf.section(".bss")
    if section is None:
        return None, ""
    addr, size = section
    try:
        data = mem.read(addr + rf.bias, size)
    except MemoryReadError:
        return None, ""
    for m in _VERSION_BUFFER.finditer(data):
        if m.start() and data[m.start() - 1] != 0:
            continue
        major, found_minor, micro = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if minor is not None and found_minor != minor:
            continue
        text = m.group(0)[:-2].decode("ascii")
        return (major, found_minor, micro), text
    return None, ""
