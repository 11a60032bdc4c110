"""The shape of a layout: frozen dataclasses of byte offsets, grouped per CPython struct.

Field names are the CPython member names (``tstate_head``, ``co_filename``...) so they grep
against the headers; where a member was renamed across versions the dataclass uses one name
and the version module's comment says which member it is.  ``None`` means "this version has no
such member".  The walker never compares versions: it branches on the traits of ``Layout``
(``frame_kind``, ``linetable_kind``, ``instr_kind``, ...).

x86-64, release (non-debug), GIL builds only.
"""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class RuntimeOffsets:
    """``_PyRuntimeState`` (the ``_PyRuntime`` symbol)."""

    interpreters_head: int
    #: Offset of the embedded ``_gil_runtime_state`` (``ceval.gil``); None from 3.12, where
    #: each interpreter points at its own.
    gil: Optional[int]


@dataclass(frozen=True)
class InterpreterOffsets:
    """``PyInterpreterState``."""

    next: int
    tstate_head: int  # ``tstate_head`` <=3.11, ``threads.head`` 3.12+
    modules: int  # ``modules`` <=3.11, ``imports.modules`` 3.12+ (the sys.modules dict)
    #: 3.12+: ``ceval.gil``, a pointer to the ``_gil_runtime_state`` in use.
    ceval_gil: Optional[int] = None
    #: 3.12+: ``_gil``, where ``ceval.gil`` points for an interpreter with its own GIL (the
    #: main one); lets the walker skip following the pointer.
    gil: Optional[int] = None


@dataclass(frozen=True)
class GilOffsets:
    """``struct _gil_runtime_state``: the same shape in 3.8-3.13 [V] (interval@0)."""

    last_holder: int = 8  # tstate of the last holder; stays set after release
    locked: int = 16  # int, -1 before the GIL is created
    size: int = 24


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
    ob_type: int = 8  # PyObject.ob_type in a GIL build

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
    skip_owner_from: Optional[int] = None
    #: 3.13+: f_executable may hold a non-code object, so check ob_type == &PyCode_Type.
    executable_may_be_non_code: bool = False
    #: Frame objects have their own ob_type to check against &PyFrame_Type (<=3.10).
    frame_has_ob_type: bool = True

    @property
    def has_native_thread_id(self) -> bool:
        return self.thread.native_thread_id is not None
