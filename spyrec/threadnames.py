"""Exact ``threading`` thread names, read from ``threading._active`` in the target.

CPython <= 3.13 does not give OS threads their Python names, so the names live only in Python
objects (dossier §6.3):

    interp->modules (sys.modules)  --"threading"-->  module  --md_dict-->  module dict
        --"_active"-->  {ident: Thread}  --each Thread's attributes-->  "_name", "_native_id"

Dicts are read whole (header, keys object, entries, split values: a few reads each) and keys
are matched by decoding every key string, since string hashes are randomised per process.
A Thread's attributes live in a per-instance dict found through ``tp_dictoffset`` (<=3.10),
or, for classes with Py_TPFLAGS_MANAGED_DICT (3.11+), in a dict or a values array stored just
before the object or inline after it, whose keys are the class's shared ``ht_cached_keys``
(see ``ObjectOffsets.instance_dict``).

This costs about a millisecond, so it is meant to run rarely and be cached (PythonProcess does).
Every step validates ``ob_type`` and sizes, and any inconsistency raises MemoryReadError.
"""

import struct
from typing import Dict, List, Optional, Tuple

from spyrec.errors import MemoryReadError
from spyrec.layouts.base import Layout
from spyrec.pystrings import ObjectReader

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
#: Type flags (Include/object.h): values are part of the C API, stable across versions.
Py_TPFLAGS_INLINE_VALUES = 1 << 2  # 3.13+
Py_TPFLAGS_MANAGED_DICT = 1 << 4  # 3.11+
#: Longest int decoded (idents and TIDs fit in three 30-bit digits), biggest dict read.
MAX_DIGITS = 8
MAX_ENTRIES = 1 << 16


class ThreadNameReader:
    """Reads ``{native_id: name}`` and ``{ident: name}`` from one interpreter's threading."""

    def __init__(self, mem, layout: Layout, objects: ObjectReader, types: Dict[str, int]):
        self.mem = mem
        self.layout = layout
        self.o = layout.objects
        self.strings = objects
        self.dict_type = types.get("PyDict_Type")
        self.long_type = types.get("PyLong_Type")
        self.module_type = types.get("PyModule_Type")

    def u64(self, addr: int) -> int:
        return _U64.unpack(self.mem.read(addr, 8))[0]

    def names(self, interp: int) -> Tuple[Dict[int, str], Dict[int, str]]:
        """(by native id, by ident) for every thread in ``threading._active``."""
        modules = self.u64(interp + self.layout.interp.modules)
        threading = self.lookup(modules, "threading")
        if threading is None:
            return {}, {}
        self._check_type(threading, self.module_type, "module")
        active = self.lookup(self.u64(threading + self.o.md_dict), "_active")
        if active is None:
            return {}, {}
        by_native: Dict[int, str] = {}
        by_ident: Dict[int, str] = {}
        for key, thread in self.items(active):
            attributes = dict(self.attributes(thread))
            if "_name" not in attributes:
                continue
            name = self.strings.read_str(attributes["_name"])
            by_ident[self.read_int(key)] = name
            native = attributes.get("_native_id")
            if native is not None:
                try:
                    by_native[self.read_int(native)] = name
                except MemoryReadError:  # None before the thread started
                    pass
        return by_native, by_ident

    # -- objects ---------------------------------------------------------------------------------

    def _check_type(self, addr: int, expected: Optional[int], what: str) -> None:
        if expected and self.u64(addr + self.layout.ob_type) != expected:
            raise MemoryReadError("object at 0x%x is not a %s" % (addr, what))

    def read_int(self, addr: int) -> int:
        """A PyLongObject's value (idents and TIDs: one or two 30-bit digits)."""
        self._check_type(addr, self.long_type, "int")
        o = self.o
        head = self.mem.read(addr, o.ob_digit)
        if o.long_kind == "lv_tag":
            tag = _U64.unpack_from(head, o.long_size)[0]
            ndigits, sign = tag >> 3, 1 - (tag & 3)
        else:
            size = _I64.unpack_from(head, o.long_size)[0]
            ndigits, sign = abs(size), (size > 0) - (size < 0)
        if ndigits > MAX_DIGITS:
            raise MemoryReadError("implausible int at 0x%x" % addr)
        digits = struct.unpack("<%dI" % ndigits, self.mem.read(addr + o.ob_digit, 4 * ndigits))
        return sign * sum(d << (30 * i) for i, d in enumerate(digits))

    def lookup(self, dict_addr: int, name: str) -> Optional[int]:
        """The value under the str key ``name`` in a dict, or None."""
        items = self.items(dict_addr)
        heads = self.mem.read_many([(key, self.strings.str_head) for key, _ in items])
        for (key, value), head in zip(items, heads):
            try:
                text = (self.strings.decode_str(key, head) if head is not None
                        else self.strings.read_str(key))
            except MemoryReadError:
                continue  # a non-str key
            if text == name:
                return value
        return None

    def items(self, dict_addr: int) -> List[Tuple[int, int]]:
        """(key, value) pointers of a dict, combined or split."""
        self._check_type(dict_addr, self.dict_type, "dict")
        o = self.o
        head = self.mem.read(dict_addr, o.ma_values + 8)
        keys = _U64.unpack_from(head, o.ma_keys)[0]
        values = _U64.unpack_from(head, o.ma_values)[0]
        return self.keys_items(keys, values + o.dict_values if values else 0)

    def keys_items(self, keys: int, values: int) -> List[Tuple[int, int]]:
        """(key, value) pairs of a PyDictKeysObject; values from ``values[]`` when split."""
        o = self.o
        head = self.mem.read(keys, o.dk_indices)
        nentries = _I64.unpack_from(head, o.dk_nentries)[0]
        if o.dict_keys_kind == "log2":
            size = 1 << head[o.dk_log2_size]
            index_bytes = 1 << head[o.dk_log2_index_bytes]
            general = head[o.dk_kind] == 0  # DICT_KEYS_GENERAL
        else:
            size = _I64.unpack_from(head, o.dk_size)[0]
            # DK_IXSIZE: each index is as wide as needed to hold an entry number
            index_bytes = size * (1 if size <= 0xFF else 2 if size <= 0xFFFF else 4)
            general = True
        entry_size = o.general_entry_size if general else o.unicode_entry_size
        if not 0 <= nentries <= min(size, MAX_ENTRIES):
            raise MemoryReadError("implausible dict keys at 0x%x" % keys)
        if not nentries:
            return []
        table = self.mem.read(keys + o.dk_indices + index_bytes, nentries * entry_size)
        fields = struct.unpack("<%dQ" % (nentries * entry_size // 8), table)
        step = entry_size // 8
        pairs = list(zip(fields[step - 2::step], fields[step - 1::step]))
        if values:
            split = struct.unpack("<%dQ" % nentries, self.mem.read(values, 8 * nentries))
            pairs = [(key, value) for (key, _), value in zip(pairs, split)]
        return [(key, value) for key, value in pairs if key and value]

    def attributes(self, obj: int) -> List[Tuple[str, int]]:
        """(name, value pointer) of an instance's attributes."""
        o = self.o
        tp = self.u64(obj + self.layout.ob_type)
        flags = self.u64(tp + o.tp_flags)
        if o.instance_dict == "dictoffset" or not flags & Py_TPFLAGS_MANAGED_DICT:
            offset = _I64.unpack(self.mem.read(tp + o.tp_dictoffset, 8))[0]
            if offset <= 0:
                return []
            pairs = self.items(self.u64(obj + offset))
        else:
            pairs = self._managed(obj, tp, flags)
        out = []
        for key, value in pairs:
            try:
                out.append((self.strings.read_str(key), value))
            except MemoryReadError:
                continue
        return out

    def _managed(self, obj: int, tp: int, flags: int) -> List[Tuple[int, int]]:
        """Py_TPFLAGS_MANAGED_DICT: a dict, or values sharing the class's cached keys."""
        o = self.o
        values = dict_or_values = 0
        if o.instance_dict == "managed311":
            values = self.u64(obj + o.managed_values)
        dict_or_values = self.u64(obj + o.managed_dict)
        if o.instance_dict == "managed311":
            if dict_or_values:
                return self.items(dict_or_values)
        elif o.instance_dict == "managed312":
            if dict_or_values & 1:  # stored as values - 1 (pycore_object.h)
                values = dict_or_values + 1
            elif dict_or_values:
                return self.items(dict_or_values)
            else:
                values = 0
        else:  # inline313
            if dict_or_values:
                return self.items(dict_or_values)
            values = 0
            if flags & Py_TPFLAGS_INLINE_VALUES:
                values = obj + self.u64(tp + o.tp_basicsize)
                if not self.mem.read(values + o.dict_values_valid, 1)[0]:
                    return []
        if not values:
            return []
        return self.keys_items(self.u64(tp + o.ht_cached_keys), values + o.dict_values)
