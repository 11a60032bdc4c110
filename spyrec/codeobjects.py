"""Code objects of the target: stable keys for live code objects, and their descriptions.

The walker reports frames as ``(code_key, instr_offset)``.  A ``code_key`` is an int: the code
object's address the first time a code object is seen there, and ``address | tag << 48`` (a fresh
tag) for each later, *different* code object found at the same address (user-space addresses
are < 2**47), so a key never names two different code objects.

Cost model: a code address already verified costs nothing on the hot path (a dict lookup).  An
unknown address is verified with one batched read of its header (``ob_type`` against
``&PyCode_Type``, plus the identity fields: filename, name, qualname, line-table pointers and
``co_firstlineno``) and, when new, its strings and line table are copied at once (one or two
more reads), because a short-lived code object may be freed before ``describe`` is asked about
it; the table is decoded when a line is first asked for.
An address that holds no code object is not remembered as such: a torn walk meets all sorts
of addresses, and a code object is soon made at one of them (a module's, run once and freed).

Staleness (<=3.13 have no code-object generation counter): the verified set is
forgotten every ``REVALIDATE_SECONDS``, so each address seen again is re-read once (one batched
read per period for the whole stack); an identity change yields a new key.  Where the pointers
are unchanged, 3.12+ tell the code object by its ``co_version``; older versions compare the
objects they point to, one more batched read.  The sampler also
re-verifies every stack it has not seen before (``refresh``), which catches a code object
replaced at the same address as soon as it runs from a new call chain.  A code object replaced
at the same address *and* run from the same call site at the same offset as its predecessor
(module after module, imported from one loop) would keep the old key for a period, so a code
object found replaced at an address that held another turns the cache ``replacing`` for a
while: each walk then verifies its frames' code objects as it reads them, the innermost as
soon as it is read (a body that runs once is freed as it returns), and the stack is named with
the keys of that moment, not verified again when it is named (by then another code object may
have been made there).
"""

import struct
import time
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

from spyformat import FREED_FRAME
from spyrec.errors import MemoryReadError
from spyrec.layouts.base import Layout
from spyrec.linetable import LineTable
from spyrec.process import MemoryReader
from spyrec.pystrings import ObjectReader
from spyrec.structs import FieldStruct

KEY_SHIFT = 48
ADDRESS_MASK = (1 << KEY_SHIFT) - 1
REVALIDATE_SECONDS = 0.02
#: How long after a code object was last found replaced at a known address the cache stays
#: ``replacing`` (see there): a dozen revalidations, so a program importing module after
#: module stays so, while one that imports now and then (a linter loading its checkers) is not
#: left without the stacks copied at interrupts for most of its run.
REPLACING_SECONDS = 0.25
#: Decoded code objects kept; past this the cache starts over (generated-code workloads).
MAX_CODES = 10_000
#: A reference count no live object has (<=3.11): what pymalloc's and glibc's free lists
#: write over a freed block's first word is an address.
MAX_REFCNT = 1 << 40


#: Key of frames to leave out silently: interpreter-internal code objects (3.13's
#: ``_Py_InitCleanup`` shim: no line number anywhere, ``co_firstlineno`` 0) and, where the
#: version allows non-code executables (3.13+), objects that are not code.
SKIP = -1
#: Key of a frame whose code object a stack copied at an interrupt ran and that was freed
#: before it was read (a module's body, code run by ``exec``): no name to give it, but its
#: place among its callers is known (see ``keys_as_copied``).
GONE = -2
#: CO_GENERATOR | CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR (Include/code.h
#: 3.8-3.10): code whose frames a generator object runs.
GENERATOR_FLAGS = 0x20 | 0x80 | 0x100 | 0x200
#: CO_COROUTINE | CO_ITERABLE_COROUTINE: code an asyncio task may run.
COROUTINE_FLAGS = 0x80 | 0x100
#: A code object is a PyVarObject whose ob_size counts its bytecode's code units
#: (_Py_CODEUNIT, two bytes; Include/cpython/code.h 3.11/3.12).
CODE_UNITS_AT = 16
CODE_UNIT_BYTES = 2
#: ``_admit``'s answer when a known code object's fields still point where they did.
_CHECK_CONTENT = object()

#: What tells code objects apart: (co_firstlineno, and the addresses of co_filename, co_name,
#: co_qualname and the line table, co_flags, co_version (3.12+; else 0)), then the values of
#: ``CodeOffsets.shape`` (<=3.11).
Identity = Tuple[int, ...]


def identity_fields(layout: Layout) -> List[Tuple[int, str]]:
    """(offset, struct code) of the fields of a code object that make its ``Identity``, in the
    order ``CodeCache._identity`` takes them."""
    co = layout.code
    fields = [(co.co_firstlineno, "i"), (co.co_filename, "Q"), (co.co_name, "Q"),
              (co.co_linetable, "Q")]
    if co.co_qualname is not None:
        fields.append((co.co_qualname, "Q"))
    if co.co_flags is not None:
        fields.append((co.co_flags, "i"))
    if co.co_version is not None:
        fields.append((co.co_version, "I"))
    return fields + list(co.shape)


def identity_window(layout: Layout) -> Tuple[int, int]:
    """(offset, bytes) of the stretch of a code object that holds its identity fields: what a
    copy at an interrupt takes of each frame's code object (spyrec.stackcapture), so that the
    frame is named after the code object it ran then, whatever was made at its address since."""
    fields = identity_fields(layout)
    start = min(offset for offset, _ in fields)
    end = max(offset + struct.calcsize("<" + code) for offset, code in fields)
    return start, end - start


class FrameInfo(NamedTuple):
    filename: str
    name: str  # co_name
    qualname: str  # co_qualname on 3.11+, else co_name
    line: int  # exact line being executed, 0 if the table has no line for the offset
    column: int  # 0-based start column (3.11+), else -1


#: What a ``GONE`` frame is written as.
FREED = FrameInfo(FREED_FRAME, FREED_FRAME, FREED_FRAME, 0, -1)


class CodeObject:
    """What ``describe`` needs from one code object, decoded once."""

    __slots__ = ("filename", "name", "qualname", "_table", "_lines", "identity", "internal",
                 "content", "generator", "coroutine")

    def __init__(self, filename: str, name: str, qualname: str, lines: Tuple[str, bytes],
                 identity: Identity, content: Tuple[Tuple[int, Union[str, bytes]], ...],
                 generator: bool = False, coroutine: bool = False):
        self.filename = filename
        self.name = name
        self.qualname = qualname
        #: (its kind, its bytes), decoded when a line is first asked for: a code object is
        #: admitted while the walk that met it waits (see StackWalker._verify_innermost), and
        #: decoding its table is most of what admitting it costs
        self._lines = lines
        self._table: Optional[LineTable] = None
        self.identity = identity
        #: ((address, decoded value), ...) of the file, name, qualname and line-table objects:
        #: what re-verification compares, since their addresses alone are reused too when a
        #: code object is freed and replaced.
        self.content = content
        #: Interpreter-made code with no source line at all (a shim, not user code).
        self.internal = identity[0] == 0 and not any(e[2] for e in self.table.entries)
        #: The code of a generator, coroutine or async generator (known where the layout
        #: reads ``co_flags``): its frame is never the bottom of a whole chain.
        self.generator = generator
        #: The code of a coroutine (an asyncio task's is one).
        self.coroutine = coroutine

    @property
    def table(self) -> LineTable:
        """The line table; MemoryReadError for bytes that are none (a code object read as it
        was freed, its table's memory reused)."""
        table = self._table
        if table is None:
            kind, data = self._lines
            try:
                table = self._table = LineTable(kind, data, self.identity[0])
            except (IndexError, ValueError):  # a truncated varint, impossible lines
                raise MemoryReadError("malformed line table") from None
        return table

    def frame_info(self, offset: int) -> FrameInfo:
        line, column = self.table.position(offset)
        return FrameInfo(self.filename, self.name, self.qualname, line, column)


class CodeCache:
    """Maps code addresses to keys (``verified``) and keys to decoded ``CodeObject``s."""

    def __init__(self, mem: MemoryReader, layout: Layout, objects: ObjectReader,
                 code_type: Optional[int], none_type: Optional[int] = None):
        self.mem = mem
        self.layout = layout
        self.objects = objects
        self.code_type = code_type
        #: ``&_PyNone_Type``: the one kind of object besides code a frame of a thread or
        #: generator may hold as its executable (3.13+), where known.
        self.none_type = none_type
        co = layout.code
        identity = identity_fields(layout)
        self._has_qualname = co.co_qualname is not None
        self._has_flags = co.co_flags is not None
        #: Whether code objects carry a version (3.12+: see CodeOffsets.co_version).
        self.versioned = co.co_version is not None
        #: Whether a copy of a code object's ``identity_window`` tells it from the others
        #: made at its address: by its version, or by its shape (see CodeOffsets.shape) where
        #: no two code objects alike were found there (``alike``).
        self.identifies = self.versioned or bool(co.shape)
        #: Addresses where a code object was replaced by another with the same identity
        #: (<=3.11: bytecode, constants and names the same size and at the same addresses):
        #: a copy's identity names no frame there.
        self.alike: Set[int] = set()
        self._base_fields = 4 + self._has_qualname + self._has_flags + self.versioned
        fields = [(layout.ob_type, "Q")] + identity
        #: The identity fields alone, from a copy of the code object's ``identity_window``.
        window_at = identity_window(layout)[0]
        self._window = FieldStruct([(offset - window_at, code) for offset, code in identity])
        #: {(address, identity): key} of every code object known, kept as long as it is:
        #: the key of a frame's code object as copied at an interrupt, when another has been
        #: made at its address since (see ``keys_as_copied``).
        self._key_of: Dict[Tuple[int, Identity], int] = {}
        self._identity_fields = len(fields)
        fields += [(offset, "i") for offset in co.frame_words]
        if co.frame_words and (CODE_UNITS_AT, "q") not in fields:
            fields.append((CODE_UNITS_AT, "q"))
        #: Where the frame words and the bytecode's length (3.11's identity has it already)
        #: lie in the header's values.
        self._words_at = slice(self._identity_fields, self._identity_fields + len(co.frame_words))
        self._units_at = fields.index((CODE_UNITS_AT, "q")) if co.frame_words else 0
        #: <=3.11: where the reference count lies in the header's values (see MAX_REFCNT).
        self._refcnt_at = len(fields) if co.shape else 0
        if co.shape:
            fields.append((0, "q"))
        self._frame_words = bool(co.frame_words)
        self._frame_specials = co.frame_specials
        self._header = FieldStruct(fields)
        self.head_size = max(self._header.size, co.size)
        #: Hot path: address -> key; None for a readable non-code object (a torn read), SKIP
        #: for a frame to leave out.
        self.verified: Dict[int, Optional[int]] = {}
        #: 3.11/3.12: code address -> bytes its frames take in a datastack chunk, as read with
        #: its header (see Layout.code.frame_words).
        self.frame_bytes: Dict[int, int] = {}
        #: 3.11/3.12: code address -> bytes of its bytecode (instruction offsets lie below).
        self.code_bytes: Dict[int, int] = {}
        self.codes: Dict[int, CodeObject] = {}
        self._key_at: Dict[int, int] = {}
        self._tag = 0
        self._resets = 0
        self._expires = time.monotonic() + REVALIDATE_SECONDS
        self._replaced_at = -REPLACING_SECONDS  # (monotonic seconds)

    def replacing(self, now: float) -> bool:
        """Whether code objects were lately found replaced at addresses that held others
        (``REPLACING_SECONDS``): a program importing module after module, or compiling code
        as it runs.  Its code objects are made, run and freed, and the next one often lands
        where the last one was: an address verified a moment ago may name another code object
        by the time a frame running the new one is read, so such a frame's code is verified
        again (see StackWalker._walk_thread)."""
        return now - self._replaced_at < REPLACING_SECONDS

    def forget(self, addresses: Iterable[int]) -> None:
        """Have ``addresses`` verified again when next met."""
        verified = self.verified
        for addr in addresses:
            verified.pop(addr, None)

    def expire(self, now: float) -> bool:
        """Forget which addresses were verified, once per period; True when it did."""
        if now < self._expires:
            return False
        self.verified.clear()
        self._expires = now + REVALIDATE_SECONDS
        return True

    def keys_for(self, addresses: Sequence[int]) -> List[Optional[int]]:
        """Keys for code addresses (None: not a readable code object); verifies unknown ones."""
        verified = self.verified
        unknown = [a for a in set(addresses) if a not in verified]
        good = [a for a in unknown if a and not a & 7 and a <= ADDRESS_MASK]
        for a in unknown:
            verified[a] = None
        if good:
            resets = self._resets
            heads = self.mem.read_many([(a, self.head_size) for a in good])
            same_pointers = []
            for addr, head in zip(good, heads):
                if head is None:
                    del verified[addr]  # unreadable now: ask again next time, do not cache
                    continue
                key = self._admit(addr, head)
                if self._frame_words and key is not None:
                    values = self._header.unpack_from(head)
                    words = values[self._words_at]
                    self.frame_bytes[addr] = 8 * (sum(words) + self._frame_specials)
                    self.code_bytes[addr] = CODE_UNIT_BYTES * values[self._units_at]
                if key is _CHECK_CONTENT:
                    same_pointers.append(addr)
                elif key is None:
                    # (remembered, a module's code object made here next had its frames cut
                    # from every walk until the next revalidation: see the module's docstring)
                    del verified[addr]
                else:
                    verified[addr] = key
            if same_pointers and self._resets != resets:
                # The cache started over while this batch was admitted: what these addresses
                # were known as is gone, so they are admitted afresh.
                for addr in same_pointers:
                    del verified[addr]
                self.keys_for(same_pointers)
            elif same_pointers:
                self._check_content(same_pointers)
        return [verified.get(a) for a in addresses]

    def _check_content(self, addresses: List[int]) -> None:
        """Confirm, with one batched read, that code objects whose fields still point where
        they did also still name the same things; decode afresh the ones that do not.

        When a code object is freed, its name, file and line-table objects often go with it,
        and a replacement allocated in the same order reuses every one of those addresses.
        """
        codes = [self.codes[self._key_at[addr]] for addr in addresses]
        objects = self.objects
        sizes: Dict[type, int] = {str: objects.str_head, bytes: objects.bytes_head}
        ranges = [(a, sizes[type(value)]) for code in codes for a, value in code.content]
        current = self.mem.read_many(ranges)
        position = 0
        for addr, code in zip(addresses, codes):
            count = len(code.content)
            now = current[position:position + count]
            position += count
            if all(head is not None and self._decoded(a, head, type(value)) == value
                   for head, (a, value) in zip(now, code.content)):
                self.verified[addr] = self._key_at[addr]
                continue
            self.alike.add(addr)
            key = self._admit(addr, None, code.identity, force_new=True)
            if key is None:
                self.verified.pop(addr, None)  # (see keys_for)
            else:
                self.verified[addr] = key

    def _decoded(self, addr: int, head: bytes, kind: type) -> Union[str, bytes, None]:
        """The str or bytes object at ``addr`` from its first bytes; None if unreadable."""
        try:
            if kind is str:
                return self.objects.decode_str(addr, head)
            return self.objects.decode_bytes(addr, head)
        except MemoryReadError:
            return None

    def refresh(self, keys: List[int]) -> List[Optional[int]]:
        """Re-verify the code objects behind ``keys`` now; their current keys, in order.

        The periodic revalidation leaves a window in which a code object freed and replaced at
        the same address keeps its old key.  The sampler closes it by refreshing every stack it
        has not seen before: a replaced code object almost always shows up first in a new
        stack, so its frames get a new key (and a new description) at once.
        """
        addresses = [key & ADDRESS_MASK for key in keys]
        for addr in set(addresses):
            self.verified.pop(addr, None)
        return self.keys_for(addresses)

    def _admit(self, addr: int, head: Optional[bytes], identity: Optional[Identity] = None,
               force_new: bool = False) -> Any:
        """The key for the code object at ``addr`` whose header is ``head``.

        Returns ``_CHECK_CONTENT`` when a known code object's fields point where they did
        (the caller then compares contents), None for a non-code object, SKIP for a frame to
        leave out.
        """
        if identity is None:
            values = self._header.unpack_from(head)
            ob_type = values[0]
            if self._refcnt_at and not 0 < values[self._refcnt_at] < MAX_REFCNT:
                # A code object freed, its header not yet overwritten but for the allocator's
                # link in its reference count: taken for itself, it would look replaced by
                # one alike where its strings were reused (see ``alike``).
                return None
            if self.code_type and ob_type != self.code_type:
                # Anything else there is what took the place of a code object freed since
                # the frame was read (a module's body, run once): the walk is torn.
                return SKIP if self.layout.executable_may_be_non_code and (
                    self.none_type is None or ob_type == self.none_type) else None
            identity = self._identity(values[1:self._identity_fields])
        key = self._key_at.get(addr)
        if key is not None and not force_new:
            known = self.codes.get(key)
            if known is not None and known.identity == identity:
                # A version number is never given twice (3.12+, see CodeOffsets.co_version):
                # the same one is the same code object, with nothing more to compare.
                return key if identity[6] else _CHECK_CONTENT
        if key is not None:
            self._replaced_at = time.monotonic()  # another code object where one was
        try:
            code = self._decode(identity)
        except MemoryReadError:
            return None
        if code.internal:
            return SKIP
        if len(self.codes) >= MAX_CODES:
            self.codes.clear()
            self._key_at.clear()
            self._key_of.clear()
            self.alike.clear()
            self.frame_bytes.clear()
            self.code_bytes.clear()
            self._resets += 1
        if key is None and not self._resets:
            key = addr
        else:
            # A different code object at a known address, or anything after a reset (when
            # old keys may still be held by the caller): a key never used before.
            self._tag += 1
            key = addr | self._tag << KEY_SHIFT
        self.codes[key] = code
        self._key_at[addr] = key
        self._key_of[addr, identity] = key
        return key

    def keys_as_copied(self, addresses: Sequence[int],
                       identities: Sequence[Optional[Identity]]) -> Optional[List[Optional[int]]]:
        """Keys for the code addresses of a stack copied at an interrupt, each frame named
        after the code object whose identity the copy took (None: not copied, the frame read
        from outside since), verified now where that one is not known by its identity at that
        address; ``GONE`` for one neither known nor there any more (made and freed between
        the copy and now).  None when one was copied where code objects alike were found."""
        keys: List[Optional[int]] = [None] * len(addresses)
        unknown = []
        for i, (addr, identity) in enumerate(zip(addresses, identities)):
            # (without a version, a code object is verified as it is now: a replacement with
            # the same identity differs in content, which puts its address in ``alike``)
            key = self._key_of.get((addr, identity)) if identity and identity[6] else None
            if key is not None and key in self.codes:
                keys[i] = key
            else:
                unknown.append(i)
        if unknown:
            addrs = [addresses[i] for i in unknown]
            self.forget(addrs)
            for i, key in zip(unknown, self.keys_for(addrs)):
                identity = identities[i]
                if identity is not None:
                    if not identity[6] and addresses[i] in self.alike:
                        return None
                    key = self._key_as_copied(addresses[i], key, identity)
                keys[i] = key
        return keys

    def _identity(self, values: Sequence[Any]) -> Identity:
        """An ``Identity`` from the values of ``identity_fields``, in their order."""
        firstlineno, filename, name, linetable = values[:4]
        qualname = values[4] if self._has_qualname else name
        flags = values[4 + self._has_qualname] if self._has_flags else 0
        base = self._base_fields
        version = values[base - 1] if self.versioned else 0
        return (firstlineno, filename, name, qualname, linetable, flags, version,
                *values[base:])

    def identity_in(self, window: bytes, at: int = 0) -> Optional[Identity]:
        """The identity of a code object from a copy of its ``identity_window`` at ``at`` in
        ``window``; None where nothing was copied (all zero: a frame read from outside)."""
        identity = self._identity(self._window.unpack_from(window, at))
        return identity if identity[1] else None

    def _key_as_copied(self, addr: int, key: Optional[int], identity: Identity) -> int:
        """The key of the code object whose identity a copy took at ``addr``, given ``key``,
        that of the one verified there now: the same, or one known before whose identity it
        is; ``GONE`` when it is neither (one made and freed since it was last verified)."""
        if key is not None:
            code = self.codes.get(key)
            if key == SKIP or code is not None and code.identity == identity:
                return key  # (SKIP: no code object, nothing to name)
        return self._key_of.get((addr, identity), GONE)

    def _decode(self, identity: Identity) -> CodeObject:
        firstlineno, filename, name, qualname, linetable, flags = identity[:6]
        objects = self.objects
        strs = [filename, name] if qualname == name else [filename, name, qualname]
        heads = self.mem.read_many([(a, objects.str_head) for a in strs]
                                   + [(linetable, objects.bytes_head)])
        texts = [objects.decode_str(a, h) if h is not None else objects.read_str(a)
                 for a, h in zip(strs, heads)]
        table_head = heads[-1]
        table = (objects.decode_bytes(linetable, table_head) if table_head is not None
                 else objects.read_bytes(linetable))
        if firstlineno < 0:
            raise MemoryReadError("implausible co_firstlineno %d" % firstlineno)
        qualname_text = texts[2] if len(texts) > 2 else texts[1]
        content = tuple(zip(strs, texts)) + ((linetable, table),)
        return CodeObject(texts[0], texts[1], qualname_text,
                          (self.layout.linetable_kind, table), identity, content,
                          bool(flags & GENERATOR_FLAGS), bool(flags & COROUTINE_FLAGS))

    def is_generator(self, addr: int) -> bool:
        """Whether the code object at ``addr`` is a generator's (verifying it if need be)."""
        code = self._code_at(addr)
        return code is not None and code.generator

    def is_coroutine(self, addr: int) -> bool:
        """Whether the code object at ``addr`` is a coroutine's (verifying it if need be)."""
        code = self._code_at(addr)
        return code is not None and code.coroutine

    def known_coroutine(self, addr: int) -> Optional[bool]:
        """Whether the code object at ``addr`` is a coroutine's, if it is known without a read;
        else None."""
        key = self.verified.get(addr)
        code = self.codes.get(key) if key is not None else None
        return None if code is None else code.coroutine

    def _code_at(self, addr: int) -> Optional[CodeObject]:
        key = self.verified.get(addr)
        if key is None:
            key = self.keys_for([addr])[0]
        return self.codes.get(key) if key is not None else None

    def describe(self, key: int, offset: int) -> FrameInfo:
        """FrameInfo for a frame; MemoryReadError if the code object cannot be read."""
        if key == GONE:
            return FREED
        code = self.codes.get(key)
        if code is None:
            addr = key & ADDRESS_MASK
            self.verified.pop(addr, None)
            new_key = self.keys_for([addr])[0]
            code = self.codes.get(new_key) if new_key not in (None, SKIP) else None
            if code is None:
                raise MemoryReadError("no code object at 0x%x any more" % addr)
        return code.frame_info(offset)
