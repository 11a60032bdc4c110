"""Reading ``str`` and ``bytes`` objects out of the target.

``PyASCIIObject`` (Include/cpython/unicodeobject.h, 3.8-3.13): ``length`` (code points) @16, ``state`` (u32
bitfield) @32 with kind in bits 2-4, compact bit 5, ascii bit 6.  Characters follow the header:
at sizeof(PyASCIIObject) (48 bytes <=3.11, 40 from 3.12) for compact ASCII strings, at
sizeof(PyCompactUnicodeObject) (72 / 56) for every other compact string, *including* latin-1
kind-1 ones.  Legacy non-compact strings (<=3.11, never used for code-object names) keep a
``data.any`` pointer there instead.  Kind 1 is latin-1, 2 UTF-16-LE, 4 UTF-32-LE.

Races: the object may be freed and reused while we read it, so the type is checked against
``&PyUnicode_Type`` / ``&PyBytes_Type`` when known, lengths are capped and the state bits must
make sense; anything else raises MemoryReadError (a torn read for the caller).
"""

import struct
from typing import Optional

from spyrec.errors import MemoryReadError
from spyrec.layouts.base import StringOffsets
from spyrec.process import MemoryReader

#: Longest str accepted (py-spy and Austin use the same bound): names and paths are shorter.
MAX_CHARS = 4096
#: Longest bytes accepted (line tables of huge generated functions stay well below).
MAX_BYTES = 1 << 22
#: Data bytes fetched together with the header, so most names take a single read.
PREFETCH = 64

_U64 = struct.Struct("<Q")
_ENCODINGS = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}


class ObjectReader:
    """Decodes str and bytes objects at target addresses, with one read in the common case."""

    def __init__(self, mem: MemoryReader, strings: StringOffsets, ob_type: int,
                 unicode_type: Optional[int] = None, bytes_type: Optional[int] = None):
        self.mem = mem
        self.s = strings
        self.ob_type = ob_type
        self.unicode_type = unicode_type
        self.bytes_type = bytes_type
        self.str_head = strings.compact_data + PREFETCH
        self.bytes_head = strings.bytes_data + PREFETCH

    def read_str(self, addr: int) -> str:
        try:
            head = self.mem.read(addr, self.str_head)
        except MemoryReadError:
            # The prefetch may cross the end of a mapping for a small object at the end of an
            # arena: read just the smallest header, the rest follows on demand.
            head = self.mem.read(addr, self.s.ascii_data)
        return self.decode_str(addr, head)

    def decode_str(self, addr: int, head: bytes) -> str:
        """The str at ``addr`` given its first bytes (at least the header) already read."""
        s = self.s
        if addr == 0 or addr & 7:
            raise MemoryReadError("bad str pointer 0x%x" % addr)
        if self.unicode_type and _U64.unpack_from(head, self.ob_type)[0] != self.unicode_type:
            raise MemoryReadError("object at 0x%x is not a str" % addr)
        length = _U64.unpack_from(head, s.length)[0]
        state = struct.unpack_from("<I", head, s.state)[0]
        kind = (state >> s.kind_shift) & 7
        if kind not in _ENCODINGS or length > MAX_CHARS:
            raise MemoryReadError("implausible str at 0x%x (kind %d, length %d)"
                                  % (addr, kind, length))
        nbytes = length * kind
        if not state >> s.compact_bit & 1:
            # Legacy string: the characters are behind the data.any pointer.
            if len(head) < s.compact_data + 8:
                head = self.mem.read(addr, s.compact_data + 8)
            data_addr = _U64.unpack_from(head, s.compact_data)[0]
            data = self.mem.read(data_addr, nbytes) if nbytes else b""
        else:
            start = s.ascii_data if state >> s.ascii_bit & 1 else s.compact_data
            if start + nbytes <= len(head):
                data = head[start:start + nbytes]
            else:
                data = self.mem.read(addr + start, nbytes)
        try:
            return data.decode(_ENCODINGS[kind], "surrogatepass")
        except UnicodeDecodeError:  # e.g. a UTF-32 "character" above U+10FFFF: not a str
            raise MemoryReadError("undecodable str at 0x%x" % addr) from None

    def read_bytes(self, addr: int) -> bytes:
        try:
            head = self.mem.read(addr, self.bytes_head)
        except MemoryReadError:
            head = self.mem.read(addr, self.s.bytes_data)
        return self.decode_bytes(addr, head)

    def decode_bytes(self, addr: int, head: bytes) -> bytes:
        s = self.s
        if addr == 0 or addr & 7:
            raise MemoryReadError("bad bytes pointer 0x%x" % addr)
        if self.bytes_type and _U64.unpack_from(head, self.ob_type)[0] != self.bytes_type:
            raise MemoryReadError("object at 0x%x is not bytes" % addr)
        size = _U64.unpack_from(head, s.bytes_size)[0]
        if size > MAX_BYTES:
            raise MemoryReadError("implausible bytes size %d at 0x%x" % (size, addr))
        if s.bytes_data + size <= len(head):
            return head[s.bytes_data:s.bytes_data + size]
        return self.mem.read(addr + s.bytes_data, size)
