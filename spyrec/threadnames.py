"""Exact ``threading`` thread names, read from ``threading._active`` in the target.

CPython <= 3.13 does not give OS threads their Python names, so the names live only in Python
objects (Lib/threading.py: ``_active``, each Thread's ``_name``):

    interp->modules (sys.modules)  --"threading"-->  module  --md_dict-->  module dict
        --"_active"-->  {ident: Thread}  --each Thread's attributes-->  "_name", "_native_id"

Dicts are read whole (header, keys object, entries, split values: a few reads each) and keys
are matched by decoding every key string, since string hashes are randomised per process.
A Thread's attributes live in a per-instance dict found through ``tp_dictoffset`` (<=3.10),
or, for classes with Py_TPFLAGS_MANAGED_DICT (3.11+), in a dict or a values array stored just
before the object or inline after it, whose keys are the class's shared ``ht_cached_keys``
(see ``ObjectOffsets.instance_dict``).

Reading every thread this way would cost much more than a round.  So the sampler asks about one
thread at a time, by its ident (``PyThreadState.thread_id``, the key of ``_active``): with the
address of ``_active`` kept, that is a probe of the dict's hash table as CPython does it
(Objects/dictobject.c, 3.8-3.15; an int's hash is its value modulo 2**61 - 1,
Objects/longobject.c) and the Thread's two attributes, a few reads.  A thread is seen before it
is in ``_active``: Lib/threading.py's ``_bootstrap_inner`` puts it there once it runs.
Every step validates ``ob_type`` and sizes, and any inconsistency raises MemoryReadError.
"""

import struct
import time
from typing import Collection, Dict, List, Mapping, Optional, Tuple

from spyrec.errors import MemoryReadError
from spyrec.layouts.base import Layout, ObjectOffsets
from spyrec.process import MemoryReader
from spyrec.pystrings import ObjectReader

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
#: Type flags (Include/object.h): values are part of the C API, stable across versions.
Py_TPFLAGS_INLINE_VALUES = 1 << 2  # 3.13+
Py_TPFLAGS_MANAGED_DICT = 1 << 4  # 3.11+
#: Longest int decoded (idents and TIDs fit in three 30-bit digits), biggest dict read.
MAX_DIGITS = 8
INT_PREFETCH_DIGITS = 2
MAX_ENTRIES = 1 << 16
#: _PyHASH_MODULUS on 64-bit builds (Include/cpython/pyhash.h), PERTURB_SHIFT (dictobject.c).
HASH_MODULUS = (1 << 61) - 1
PERTURB_SHIFT = 5
#: How long a failed search for ``threading._active`` (not imported yet) is remembered.
ACTIVE_RETRY_S = 0.1
#: Bytes read after a dict's keys header with it: all of a table of up to ~40 entries.
KEYS_PREFETCH = 1024
_INDEX = {1: struct.Struct("<b"), 2: struct.Struct("<h"), 4: struct.Struct("<i"),
          8: struct.Struct("<q")}
_ENTRY = struct.Struct("<qQQ")  # PyDictKeyEntry: me_hash, me_key, me_value
#: Attribute-name strings decoded, kept by address (they are interned, owned by class keys).
KEY_CACHE_LIMIT = 4096


def int_hash(value: int) -> int:
    """``hash(value)`` for an int in a 64-bit CPython (long_hash, Objects/longobject.c)."""
    h = abs(value) % HASH_MODULUS
    h = -h if value < 0 else h
    return -2 if h == -1 else h


class ThreadNameReader:
    """Reads ``{native_id: name}`` and ``{ident: name}`` from one interpreter's threading."""

    def __init__(self, mem: MemoryReader, layout: Layout, objects: ObjectReader,
                 types: Mapping[str, Optional[int]]):
        if layout.objects is None:  # every version's layout has them
            raise ValueError("layout %s has no object offsets to read thread names with"
                             % layout.name)
        self.mem = mem
        self.layout = layout
        self.o: ObjectOffsets = layout.objects
        self.strings = objects
        self.dict_type = types.get("PyDict_Type")
        self.long_type = types.get("PyLong_Type")
        self.module_type = types.get("PyModule_Type")
        self.none_type = types.get("_PyNone_Type")
        self._active: Dict[int, Tuple[Optional[int], float]] = {}  # interp -> (_active, when)
        self._key_names: Dict[int, str] = {}

    def u64(self, addr: int) -> int:
        return _U64.unpack(self.mem.read(addr, 8))[0]

    def name_of(self, interp: int, ident: int) -> Optional[Tuple[str, Optional[int]]]:
        """(name, native id or None) of the Thread under ``ident`` in one interpreter's
        ``threading._active``, or None when it is not there."""
        active = self.active(interp)
        if active is None:
            return None
        try:
            thread = self.find_int(active, ident)
        except MemoryReadError:
            del self._active[interp]  # the dict may be gone: look for it again next time
            raise
        if thread is None:
            return None
        attributes = dict(self.attributes(thread, ("_name", "_native_id")))
        name = attributes.get("_name")
        if name is None:
            return None
        native = attributes.get("_native_id")
        if native is None:
            return self.strings.read_str(name), None
        # both objects in one read; each is read again alone if its prefetch failed
        name_head, native_head = self.mem.read_many(
            [(name, self.strings.str_head), (native, self.o.ob_digit + 4 * INT_PREFETCH_DIGITS)])
        text = (self.strings.decode_str(name, name_head) if name_head is not None
                else self.strings.read_str(name))
        try:
            return text, self.read_int(native, native_head)
        except MemoryReadError:  # None before the thread started
            return text, None

    def active(self, interp: int) -> Optional[int]:
        """The address of ``threading._active`` in one interpreter, found once and kept (the
        module never rebinds it; ``_after_fork`` refills the same dict)."""
        found, when = self._active.get(interp, (None, -ACTIVE_RETRY_S))
        if found is None and time.monotonic() - when >= ACTIVE_RETRY_S:
            found = self.module_global(interp, "threading", "_active")
            self._active[interp] = (found, time.monotonic())
        return found

    def module_count(self, interp: int) -> int:
        """How many modules one interpreter's ``sys.modules`` holds (one read)."""
        modules = self.u64(interp + self.layout.interp.modules)
        return _I64.unpack(self.mem.read(modules + self.o.ma_used, 8))[0]

    def module_global(self, interp: int, module: str, name: str) -> Optional[int]:
        """The object bound to ``name`` in the module ``module`` of one interpreter's
        ``sys.modules``, or None while the module is not imported (or has no such name)."""
        found = self.lookup(self.u64(interp + self.layout.interp.modules), module)
        if found is None:
            return None
        self._check_type(found, self.module_type, "module")
        return self.lookup(self.u64(found + self.o.md_dict), name)

    def find_int(self, dict_addr: int, value: int) -> Optional[int]:
        """The value under the int key ``value`` in a dict, probing its hash table like
        CPython's lookdict (the index sequence is the same in 3.8-3.15)."""
        o = self.o
        head = self.mem.read(dict_addr, o.ma_values + 8)
        if self.dict_type and _U64.unpack_from(head, self.layout.ob_type)[0] != self.dict_type:
            raise MemoryReadError("object at 0x%x is not a dict" % dict_addr)
        keys = _U64.unpack_from(head, o.ma_keys)[0]
        values = _U64.unpack_from(head, o.ma_values)[0]
        (size, index_bytes, general, nentries), table = self._keys_shape(keys, KEYS_PREFETCH)
        if not general or not nentries:  # int keys make a general table (3.11+)
            return None
        width = index_bytes // size
        index = _INDEX[width]
        indices = keys + o.dk_indices
        entries = indices + index_bytes
        entry_size = o.general_entry_size
        if len(table) < index_bytes + nentries * entry_size:  # a big table: a read per probe
            table = b""
        h = int_hash(value)
        mask = size - 1
        perturb = h & 0xFFFFFFFFFFFFFFFF
        i = perturb & mask
        # Until the slot or an empty one, as lookdict does: the sequence can revisit slots while
        # ``perturb`` lasts (64 bits, PERTURB_SHIFT at a time), then covers the table once.
        for _ in range(64 // PERTURB_SHIFT + 1 + size):
            if table:
                ix = index.unpack_from(table, i * width)[0]
            else:
                ix = index.unpack(self.mem.read(indices + i * width, width))[0]
            if ix == -1:  # DKIX_EMPTY
                return None
            if 0 <= ix < nentries:
                if table:
                    entry_hash, key, entry_value = _ENTRY.unpack_from(
                        table, index_bytes + ix * entry_size)
                else:
                    entry_hash, key, entry_value = _ENTRY.unpack(
                        self.mem.read(entries + ix * entry_size, _ENTRY.size))
                # _active's keys are ints, and an int below 2**61 is its own hash
                if entry_hash == h and key and (0 <= value < HASH_MODULUS
                                                or self.read_int(key) == value):
                    if values:
                        entry_value = self.u64(values + o.dict_values + 8 * ix)
                    return entry_value or None
            perturb >>= PERTURB_SHIFT
            i = (i * 5 + perturb + 1) & mask
        return None

    def _keys_shape(self, keys: int, prefetch: int = 0) -> Tuple[Tuple[int, int, bool, int], bytes]:
        """((slots, bytes of the index table, general entries?, entries used), the first
        ``prefetch`` bytes after the header, or fewer) of a dict's keys object."""
        o = self.o
        try:
            head = self.mem.read(keys, o.dk_indices + prefetch)
        except MemoryReadError:
            if not prefetch:
                raise
            head = self.mem.read(keys, o.dk_indices)  # the prefetch crossed a mapping's end
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
        if size <= 0 or size & (size - 1) or index_bytes % size \
                or index_bytes // size not in _INDEX or not 0 <= nentries <= min(size, MAX_ENTRIES):
            raise MemoryReadError("implausible dict keys at 0x%x" % keys)
        return (size, index_bytes, general, nentries), head[o.dk_indices:]

    # -- objects ---------------------------------------------------------------------------------

    def _check_type(self, addr: int, expected: Optional[int], what: str) -> None:
        if expected and self.u64(addr + self.layout.ob_type) != expected:
            raise MemoryReadError("object at 0x%x is not a %s" % (addr, what))

    def is_none(self, addr: int) -> bool:
        """Whether the object at ``addr`` is None (one read; False where None's type is not
        known)."""
        return bool(self.none_type) and self.u64(addr + self.layout.ob_type) == self.none_type

    def read_int(self, addr: int, head: Optional[bytes] = None) -> int:
        """A PyLongObject's value (idents and TIDs: one or two 30-bit digits), one read;
        ``head``: its first bytes, when already read."""
        o = self.o
        if head is None:
            try:
                head = self.mem.read(addr, o.ob_digit + 4 * INT_PREFETCH_DIGITS)
            except MemoryReadError:  # the prefetch crossed a mapping's end
                head = self.mem.read(addr, o.ob_digit)
        if self.long_type and _U64.unpack_from(head, self.layout.ob_type)[0] != self.long_type:
            raise MemoryReadError("object at 0x%x is not a int" % addr)
        if o.long_kind == "lv_tag":
            tag = _U64.unpack_from(head, o.long_size)[0]
            ndigits, sign = tag >> 3, 1 - (tag & 3)
        else:
            size = _I64.unpack_from(head, o.long_size)[0]
            ndigits, sign = abs(size), (size > 0) - (size < 0)
        if ndigits > MAX_DIGITS:
            raise MemoryReadError("implausible int at 0x%x" % addr)
        data = head[o.ob_digit:o.ob_digit + 4 * ndigits]
        if len(data) < 4 * ndigits:
            data = self.mem.read(addr + o.ob_digit, 4 * ndigits)
        digits = struct.unpack("<%dI" % ndigits, data)
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
        (_, index_bytes, general, nentries), _ = self._keys_shape(keys)
        entry_size = o.general_entry_size if general else o.unicode_entry_size
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

    def attributes(self, obj: int,
                   wanted: Optional[Collection[str]] = None) -> List[Tuple[str, int]]:
        """(name, value pointer) of an instance's attributes (only those in ``wanted``, if given).

        Attribute names are decoded once per string: instances of a class share them.
        """
        o = self.o
        tp = self.u64(obj + self.layout.ob_type)
        # the type's three fields in one read (they sit within 300 bytes of its start)
        first = min(o.tp_basicsize, o.tp_flags, o.tp_dictoffset)
        span = self.mem.read(tp + first, max(o.tp_basicsize, o.tp_flags, o.tp_dictoffset) + 8 - first)
        flags = _U64.unpack_from(span, o.tp_flags - first)[0]
        if o.instance_dict == "dictoffset" or not flags & Py_TPFLAGS_MANAGED_DICT:
            offset = _I64.unpack_from(span, o.tp_dictoffset - first)[0]
            if offset <= 0:
                return []
            pairs = self.items(self.u64(obj + offset))
        else:
            basicsize = _I64.unpack_from(span, o.tp_basicsize - first)[0]
            pairs = self._managed(obj, tp, flags, basicsize)
        names = self._key_names
        unknown = [key for key, _ in pairs if key not in names]
        if unknown:
            if len(names) + len(unknown) > KEY_CACHE_LIMIT:
                names.clear()
            heads = self.mem.read_many([(key, self.strings.str_head) for key in unknown])
            for key, head in zip(unknown, heads):
                try:
                    names[key] = (self.strings.decode_str(key, head) if head is not None
                                  else self.strings.read_str(key))
                except MemoryReadError:
                    continue  # not a str: skipped below
        out = []
        for key, value in pairs:
            name = names.get(key)
            if name is not None and (wanted is None or name in wanted):
                out.append((name, value))
        return out

    def _managed(self, obj: int, tp: int, flags: int, basicsize: int) -> List[Tuple[int, int]]:
        """Py_TPFLAGS_MANAGED_DICT: a dict, or values sharing the class's cached keys."""
        o = self.o
        values = dict_or_values = 0
        if o.instance_dict == "managed311":  # values pointer, then dict pointer
            pair = self.mem.read(obj + o.managed_values, 16)
            values = _U64.unpack_from(pair, 0)[0]
            dict_or_values = _U64.unpack_from(pair, o.managed_dict - o.managed_values)[0]
        else:
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
                values = obj + basicsize
                if not self.mem.read(values + o.dict_values_valid, 1)[0]:
                    return []
        if not values:
            return []
        return self.keys_items(self.u64(tp + o.ht_cached_keys), values + o.dict_values)
