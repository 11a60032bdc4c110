"""The shape of a layout: frozen dataclasses of byte offsets, grouped per CPython struct.

Field names are the CPython member names (``tstate_head``, ``co_filename``...) so they grep
against the headers; where a member was renamed across versions the dataclass uses one name
and the version module's comment says which member it is.  ``None`` means "this version has no
such member".  The walker never compares versions: it branches on the traits of ``Layout``
(``frame_kind``, ``linetable_kind``, ``instr_kind``, ...).

x86-64, release (non-debug), GIL builds only.
"""

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class RuntimeOffsets:
    """``_PyRuntimeState`` (the ``_PyRuntime`` symbol)."""

    interpreters_head: int
    #: Offset of the embedded ``_gil_runtime_state`` (``ceval.gil``); None from 3.12, where
    #: each interpreter points at its own.
    gil: Optional[int]
    #: 3.8: ``gc.collecting``, non-zero while the garbage collector runs (the GC state moved
    #: into each interpreter in 3.9).
    gc_collecting: Optional[int] = None


@dataclass(frozen=True)
class InterpreterOffsets:
    """``PyInterpreterState``."""

    next: int
    tstate_head: int  # ``tstate_head`` <=3.10, ``threads.head`` 3.11+
    modules: int  # ``modules`` <=3.11, ``imports.modules`` 3.12+ (the sys.modules dict)
    #: 3.12+: ``ceval.gil``, a pointer to the ``_gil_runtime_state`` in use.
    ceval_gil: Optional[int] = None
    #: 3.12+: ``_gil``, where ``ceval.gil`` points for an interpreter with its own GIL (the
    #: main one); lets the walker skip following the pointer.
    gil: Optional[int] = None
    #: 3.14+: ``_code_object_generation``, a counter bumped whenever a code object is freed
    #: (a cheap signal that cached code objects may be stale); None before 3.14.
    code_object_generation: Optional[int] = None
    #: 3.9+: ``gc.collecting``, non-zero while this interpreter's garbage collector runs.
    gc_collecting: Optional[int] = None


@dataclass(frozen=True)
class GilOffsets:
    """``struct _gil_runtime_state``: the same shape in 3.8-3.13 [V] (interval@0)."""

    last_holder: int = 8  # tstate of the last holder; stays set after release
    locked: int = 16  # int, -1 before the GIL is created
    #: unsigned long, counts the takes of the GIL by a thread other than ``last_holder``.
    switch_number: int = 24
    size: int = 32


@dataclass(frozen=True)
class ThreadOffsets:
    """``PyThreadState`` (``struct _ts``)."""

    prev: int
    next: int
    interp: int
    #: Where the thread's top frame hangs, interpreted per ``Layout.thread_frame_kind``:
    #: ``frame`` (PyFrameObject*) <=3.10, ``cframe`` (_PyCFrame*) 3.11/3.12, ``current_frame``
    #: (_PyInterpreterFrame*) 3.13+.
    frame: int
    thread_id: int  # pthread_self(): the address of glibc's struct pthread, not a TID
    native_thread_id: Optional[int]  # kernel TID in the target's PID namespace, 3.11+
    datastack_chunk: Optional[int]  # _PyStackChunk*, newest chunk, 3.11+
    datastack_top: Optional[int]  # PyObject**, end of the used part of the newest chunk
    size: int  # sizeof(PyThreadState): read whole, it is small
    #: 3.15+: ``base_frame``, the sentinel frame at the bottom of every thread's chain (it
    #: lives in the thread state, after PyThreadState): the walk stops there without reading it.
    base_frame: Optional[int] = None
    #: <=3.10: ``uint64_t id``, a number each new thread state takes from its interpreter.  These
    #: hold no TID, and a thread state freed and made again at its address for the next thread,
    #: on the pthread struct glibc hands on and with a frame at a reused address, can match the
    #: old one field for field: this tells them apart.
    unique_id: Optional[int] = None


@dataclass(frozen=True)
class CFrameOffsets:
    """``_PyCFrame`` (3.11, 3.12): the C-level link from a thread to its current frame."""

    current_frame: int


@dataclass(frozen=True)
class FrameOffsets:
    """``PyFrameObject`` (<=3.10) or ``_PyInterpreterFrame`` (3.11+)."""

    code: int  # ``f_code`` (<=3.12) or ``f_executable`` (3.13+)
    previous: int  # ``f_back`` (<=3.10) or ``previous``
    #: ``f_lasti`` (int, <=3.10), ``prev_instr`` (3.11/3.12) or ``instr_ptr`` (3.13+), both
    #: pointers; see ``Layout.instr_kind``.
    instr: int
    owner: Optional[int]  # char ``owner``, _PyInterpreterFrame only
    size: int  # bytes to read to cover every field above
    #: ``f_gen`` (<=3.10): the generator a frame belongs to, NULL for a function's frame.  A
    #: suspended generator's ``f_back`` is NULL, so a chain may not end at such a frame.
    gen: Optional[int] = None
    #: (<=3.10) Where a frame says whether it is running, and the byte it holds then:
    #: ``f_executing`` 1 (3.8, 3.9) or ``f_state`` FRAME_EXECUTING 0 (3.10).  A returned
    #: frame keeps its code and links (it waits for reuse), so only this tells it is live.
    executing: Optional[int] = None
    executing_value: int = 1
    #: (3.11) ``is_entry``: the frame is the first its run of the eval loop ran, so its
    #: caller runs in another (see spyrec.nativestacks).  3.12+ marks a run with an entry
    #: frame instead (``Layout.skip_owner_from``).
    is_entry: Optional[int] = None


@dataclass(frozen=True)
class CodeOffsets:
    """``PyCodeObject`` (fixed part)."""

    co_firstlineno: int
    co_filename: int
    co_name: int
    co_qualname: Optional[int]  # 3.11+
    co_linetable: int  # ``co_lnotab`` <=3.9, ``co_linetable`` 3.10+ (bytes*)
    co_code_adaptive: Optional[int]  # 3.11+: the bytecode, inline in the code object
    size: int
    #: int ``co_flags``, read where the frame does not say whether it is a generator's (<=3.10),
    #: and to tell coroutine frames (where an asyncio task's own frames begin)
    co_flags: Optional[int] = None
    #: 3.11/3.12: the int members whose sum, plus ``frame_specials``, is the size in words of
    #: the code's frames in a datastack chunk: ``co_framesize`` (3.12), or ``co_nlocalsplus``
    #: and ``co_stacksize`` (3.11, plus FRAME_SPECIALS_SIZE, 9: _PyFrame_Push in Python/frame.c
    #: and Include/internal/pycore_frame.h).  Empty where the walker does not check a chain
    #: against the chunk's top.
    frame_words: Tuple[int, ...] = ()
    frame_specials: int = 0
    #: 3.12+: uint32 ``co_version``, which each new code object takes from the interpreter's
    #: next function version, then counted up (Objects/codeobject.c ``init_code``, 3.12-3.15;
    #: 0 once the count ran out): a code object freed and replaced at the same address,
    #: with its name, file and line table at the same addresses too, still differs here.
    co_version: Optional[int] = None
    #: <=3.11, which have no ``co_version``: (offset, struct code) of more fields that tell
    #: apart two code objects made one after the other at one address whose names, file and
    #: line table were made at the same addresses too (a module's body after another's): the
    #: addresses of the bytecode (or its length, 3.11: ob_size counts its code units), of the
    #: constants and of the names, and (<=3.10) the stack size (Include/cpython/code.h 3.8-3.11).
    shape: Tuple[Tuple[int, str], ...] = ()


@dataclass(frozen=True)
class StringOffsets:
    """``PyASCIIObject`` / ``PyCompactUnicodeObject`` and ``PyBytesObject``."""

    ascii_data: int  # sizeof(PyASCIIObject): where compact ASCII characters start
    compact_data: int  # sizeof(PyCompactUnicodeObject): where other compact strings start
    length: int = 16  # Py_ssize_t, in code points
    state: int = 32  # u32 bitfield
    kind_shift: int = 2  # state bits 2-4: 1, 2 or 4 bytes per character
    compact_bit: int = 5
    ascii_bit: int = 6
    bytes_size: int = 16  # PyBytesObject.ob_size
    bytes_data: int = 32  # PyBytesObject.ob_sval


@dataclass(frozen=True)
class ChunkOffsets:
    """``_PyStackChunk`` header (3.11+): previous@0, size@8, top@16, data@24 [V 3.11-3.13]."""

    previous: int = 0
    size: int = 8
    top: int = 16  # slots in use, saved when a newer chunk is pushed
    data: int = 24


@dataclass(frozen=True)
class ObjectOffsets:
    """Types, modules, dicts and ints: what it takes to read ``threading._active`` (thread
    names, see threadnames.py).  The sampler uses them only for a thread it has no name for yet.
    """

    ht_cached_keys: int  # PyHeapTypeObject: the shared keys of the class's instance dicts
    tp_basicsize: int = 32  # PyTypeObject
    tp_flags: int = 168
    tp_dictoffset: int = 288
    md_dict: int = 16  # PyModuleObject
    ma_used: int = 16  # PyDictObject
    ma_keys: int = 32
    ma_values: int = 40
    #: PyDictKeysObject header: "dk_size" (<=3.10: Py_ssize_t dk_size, general entries
    #: only) or "log2" (3.11+: u8 dk_log2_size, dk_log2_index_bytes, dk_kind; kind 0 has
    #: hash/key/value entries, kinds 1 (unicode) and 2 (split) key/value ones).
    dict_keys_kind: str = "dk_size"
    dk_size: int = 8  # "dk_size" kind
    dk_log2_size: int = 8  # "log2" kind, u8 each
    dk_log2_index_bytes: int = 9
    dk_kind: int = 10
    dk_nentries: int = 32
    dk_indices: int = 40  # index table, then the entries
    general_entry_size: int = 24  # PyDictKeyEntry: me_hash, me_key, me_value
    unicode_entry_size: int = 16  # PyDictUnicodeEntry: me_key, me_value
    dict_values: int = 0  # where PyDictValues.values[] starts (3.13: after a 4-byte header)
    #: "ob_size" (<=3.11: signed digit count @16) or "lv_tag" (3.12+: ndigits << 3 | sign).
    long_kind: str = "ob_size"
    long_size: int = 16
    ob_digit: int = 24  # 30-bit digits in u32s
    #: Where an instance keeps its attributes: "dictoffset" (<=3.10: tp_dictoffset), or, for
    #: Py_TPFLAGS_MANAGED_DICT classes (words before the GC header), "managed311" (values
    #: pointer, then dict pointer), "managed312" (dict-or-values; odd = values pointer - 1) or
    #: "inline313" (dict pointer, else values inline at tp_basicsize when
    #: Py_TPFLAGS_INLINE_VALUES).
    instance_dict: str = "dictoffset"
    managed_values: int = -32  # relative to the object, "managed311"
    managed_dict: int = -24  # dict (or dict-or-values) pointer
    dict_values_valid: int = 3  # "inline313": PyDictValues.valid (u8)


@dataclass(frozen=True)
class TaskOffsets:
    """Where ``_asyncio``'s Task object (TaskObj, Modules/_asynciomodule.c) keeps the coroutine
    it runs and its name: after the Future's fields, which grew and shrank between versions.
    3.14+ describe them in the ``.AsyncioDebug`` section instead (spyrec/asynciotasks.py)."""

    task_coro: int
    task_name: int


@dataclass(frozen=True)
class AwaitOffsets:
    """What a suspended coroutine awaits (``_PyGen_yf``, Objects/genobject.c 3.8-3.15): the
    object on top of its frame's value stack, while its frame state says it stopped in an
    ``await`` (a ``yield from``)."""

    #: int8 frame state: ``gi_frame_state`` in the generator or coroutine object (3.11+),
    #: ``f_state`` in its frame object (3.10); None (3.8, 3.9): suspended when ``f_stacktop``
    #: is set, running or finished when it is NULL.
    frame_state: Optional[int]
    #: The state of a coroutine stopped in an await: FRAME_SUSPENDED_YIELD_FROM (3.13+), or
    #: FRAME_SUSPENDED (3.10-3.12), where the next instruction must also say it was an await:
    #: one of ``resume_opcodes`` with an oparg of 2 or more (RESUME after a yield from, 3.11,
    #: 3.12), or ``yield_from_opcode`` (YIELD_FROM, 3.8-3.10, read in ``co_code``).
    suspended: int = -1
    resume_opcodes: Tuple[int, ...] = ()
    yield_from_opcode: Optional[int] = None
    co_code: Optional[int] = None  # PyCodeObject.co_code, a bytes object (3.8-3.10)
    #: Finished states start here (FRAME_COMPLETED, then FRAME_CLEARED; 3.15: FRAME_CLEARED).
    completed: int = 1
    #: Where the frame's value stack ends: an int index (``stacktop`` 3.11-3.13, ``f_stackdepth``
    #: 3.10), or a pointer past the top (``stackpointer`` 3.14+, ``f_stacktop`` 3.8, 3.9).
    stack_top: int = 64
    stack_top_is_pointer: bool = False
    #: Where a frame's locals start: ``localsplus`` (3.11+), ``f_localsplus`` (3.8-3.10).  The
    #: stack starts there on 3.11+, where ``valuestack`` (``f_valuestack``) points on 3.8-3.10.
    localsplus: int = 72
    valuestack: Optional[int] = None
    #: How many words below the stack's top the awaited object lies: 1 (``_PyFrame_StackPeek``),
    #: 2 from 3.15, where the top holds the value being sent.
    awaited_slot: int = 1


#: ``FRAME_OWNED_BY_GENERATOR`` (Include/internal/pycore_frame.h 3.11-3.13,
#: pycore_interpframe_structs.h 3.14+): a generator's or coroutine's frame, whose ``previous``
#: is cleared each time it yields, so a chain may not end at one.
FRAME_OWNED_BY_GENERATOR = 1
#: ``FRAME_OWNED_BY_THREAD``: a frame in its thread's datastack, a function's.
FRAME_OWNED_BY_THREAD = 0


@dataclass(frozen=True)
class Layout:
    """Everything the walker needs to know about one CPython version family."""

    name: str  # the module / family, e.g. "v3_11", or "debug_offsets 3.13"
    runtime: RuntimeOffsets
    interp: InterpreterOffsets
    thread: ThreadOffsets
    frame: FrameOffsets
    code: CodeOffsets
    strings: StringOffsets
    cframe: Optional[CFrameOffsets] = None
    chunk: Optional[ChunkOffsets] = None
    gil: GilOffsets = GilOffsets()
    objects: Optional[ObjectOffsets] = None
    ob_type: int = 8  # PyObject.ob_type in a GIL build
    #: 3.11+: ``gi_iframe``, where a generator or coroutine object holds its frame (3.14+
    #: from the debug offsets); <=3.10: ``gi_frame``, where it points to its frame object.
    gen_iframe: Optional[int] = None
    gen_frame_pointer: Optional[int] = None
    #: <=3.13: the asyncio Task's fields (3.14+ read them from ``_asyncio`` itself).
    task: Optional[TaskOffsets] = None
    #: 3.11+: what a suspended coroutine awaits (``spyrec where --tasks``).
    awaits: Optional[AwaitOffsets] = None

    # -- capability traits ------------------------------------------------------------------
    #: "pyframe": heap PyFrameObjects linked by f_back (<=3.10); "iframe": _PyInterpreterFrames
    #: in per-thread datastack chunks (3.11+).
    frame_kind: str = "pyframe"
    #: "frame", "cframe" or "current_frame": see ThreadOffsets.frame.
    thread_frame_kind: str = "frame"
    #: "lasti_bytes" (<=3.9), "lasti_units" (3.10: code units, x2) or "code_pointer" (3.11+:
    #: pointer minus code + co_code_adaptive).
    instr_kind: str = "lasti_bytes"
    #: "lnotab" (<=3.9), "linetable310" or "locations311" (3.11+, with columns).
    linetable_kind: str = "lnotab"
    #: "runtime" (one GIL embedded in _PyRuntime, <=3.11) or "interp" (per interpreter, 3.12+).
    gil_kind: str = "runtime"
    #: Highest valid _PyInterpreterFrame.owner value.
    max_frame_owner: int = 2
    #: Frames with owner >= this are C-stack shims, not Python code (3.12+); None: no shims.
    #: Every run of the eval loop starts with one (``entry_frame`` in Python/ceval.c), so from
    #: 3.12 on a whole chain ends at such a frame.
    skip_owner_from: Optional[int] = None
    #: 3.13+: f_executable may hold a non-code object, so check ob_type == &PyCode_Type.
    executable_may_be_non_code: bool = False
    #: Frame objects have their own ob_type to check against &PyFrame_Type (<=3.10).
    frame_has_ob_type: bool = True
    #: 3.14+: ``f_executable`` is a ``_PyStackRef``, a tagged word whose low bits say how the
    #: reference is owned (Include/internal/pycore_stackref.h); these bits are cleared to get
    #: the object address.  0: a plain pointer.
    executable_tag_mask: int = 0
    #: Set when the target's minor is newer than every known one: the known minor whose
    #: ``_Py_DebugOffsets`` field list was used, after the target's blob passed every check
    #: (see layouts/debug_offsets.py).
    guessed_from: Optional[Tuple[int, int]] = None

    @property
    def has_native_thread_id(self) -> bool:
        return self.thread.native_thread_id is not None
