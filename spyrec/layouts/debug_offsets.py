"""CPython 3.13+: the layout comes from the target's own ``_Py_DebugOffsets``.

``_Py_DebugOffsets`` is the first member of ``_PyRuntimeState``, statically initialised, so it
sits at ``_PyRuntime`` from process load (Include/internal/pycore_runtime.h,
v3.13.0).  Only its prefix is fixed: ``char cookie[8] = "xdebugpy"``, ``u64 version``
(PY_VERSION_HEX), ``u64 free_threaded``.  After that come groups of u64 values, in most groups
``size`` (sizeof the C struct) first and then byte offsets inside that struct.

The *values* may change between patch releases (3.14.5 moved ``imports.modules``), so they are
always read from the target.  The *list of fields* changes every minor (3.14 inserts
``threads_main`` in the interpreter group, 3.15 seven fields in the thread group), so each minor
gets a small ``DebugOffsetsSpec``: its field names in blob order, plus the facts the blob does
not carry (frame owners, ``_PyStackRef`` tag bits, dict internals for thread names).

Where each field list comes from (Include/internal/pycore_debug_offsets.h of that minor), and
how it was checked:

* 3.13 (584 bytes): the blob of a live 3.13.0 equals the gcc ``offsetof`` table,
  and tests/test_layouts.py re-derives every value from DWARF.
* 3.14 (760 bytes): dumped live from Debian's 3.14.10: every group starts where
  the list puts it (its ``size`` and fixed values below line up), and a walk of
  tests/targets/stacks.py with these values recovers every thread's ident, native TID, exact
  stack and GIL holder (tests/test_newest_pythons.py, tests/test_walker.py).
* 3.15 (888 bytes): the 3.15 header (thread_state gained ``base_frame``,
  ``last_profiled_frame``, ``last_profiled_frame_seq``, ``holds_gil``, ``gil_requested``,
  ``current_exception``, ``exc_state``; new groups ``err_stackitem`` and ``heap_type_object``;
  ``type_object`` gained ``tp_basicsize``/``tp_dictoffset``, ``unicode_object``
  ``compactunicodeobject_size``, ``gc`` the frame and generation statistics).  Checked live on
  Debian's 3.15.2 the same way.

Trust, and minors newer than the newest spec: a blob is only accepted when every
check of ``blob_problem`` passes: values a GIL release build always has, placed in the public
object groups that come *after* the runtime, interpreter, thread, frame and code groups (so a
field list one field off anywhere before them fails), plausible struct sizes, every offset inside
its struct, pointer fields aligned, and the GIL fields where ``_gil_runtime_state`` puts them.
A newer minor (3.16+) is read with the newest spec when its blob passes all of that *and* a live
walk of its threads checks out (``PythonProcess`` does that); otherwise it is refused with a
message naming the version and the first check that failed.  A future minor whose field list
did not change therefore needs no new table; one that did is refused, never misread.
"""

import struct
from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

from spyrec.errors import UnsupportedPython
from spyrec.layouts.base import (AwaitOffsets, ChunkOffsets, CodeOffsets, FrameOffsets, GilOffsets,
                                 InterpreterOffsets, Layout, ObjectOffsets, RuntimeOffsets,
                                 StringOffsets, TaskOffsets, ThreadOffsets)

COOKIE = b"xdebugpy"
PREFIX = struct.Struct("<8sQQ")  # cookie, version (PY_VERSION_HEX), free_threaded

Groups = Tuple[Tuple[str, Tuple[str, ...]], ...]
Blob = Dict[str, Dict[str, int]]


@dataclass(frozen=True)
class DebugOffsetsSpec:
    """How to read one minor's ``_Py_DebugOffsets`` and what it leaves out."""

    minor: Tuple[int, int]
    groups: Groups  # (group, fields) in blob order, each field a u64
    #: Frame owners (pycore_frame.h / pycore_interpframe_structs.h): the highest valid value,
    #: and the first one that marks an entry or C-stack frame that is not user code.
    max_frame_owner: int
    skip_owner_from: int
    #: ``_PyStackRef`` tag bits to clear from ``f_executable`` (3.14+; 0: a plain pointer).
    executable_tag_mask: int = 0
    #: sizeof(PyCompactUnicodeObject) - sizeof(PyASCIIObject): utf8_length + utf8 pointer in a
    #: GIL build [V 3.13, 3.14]; used when the blob has no ``compactunicodeobject_size``.
    compact_unicode_extra: int = 16
    #: ``co_flags`` (int) in PyCodeObject: after the object head and the co_consts, co_names
    #: and co_exceptiontable pointers in 3.11-3.15 (Include/cpython/code.h); not in the blob.
    #: Read to tell coroutine frames (where an asyncio task's own frames begin).
    co_flags: int = 48
    #: ``co_version`` (uint32) in PyCodeObject, after co_framesize, co_nlocals, co_ncellvars and
    #: co_nfreevars in 3.13-3.15 (Include/cpython/code.h); not in the blob.
    co_version: int = 92
    chunk: ChunkOffsets = field(default_factory=ChunkOffsets)
    #: Object layouts for thread names; the blob's type, dict, long (and from 3.15 heap-type)
    #: values override these (the rest, e.g. the dict-keys header, is not in the blob).
    objects: ObjectOffsets = field(default_factory=lambda: ObjectOffsets(ht_cached_keys=880))
    #: Before 3.14, which has them in the blob and in ``_asyncio``'s own table: where a
    #: coroutine holds its frame and where a Task keeps its coroutine and name.
    gen_iframe: Optional[int] = None
    task: Optional[TaskOffsets] = None
    #: Before 3.14, whose blob has ``gi_frame_state`` and ``stackpointer``: what a suspended
    #: coroutine awaits.  From 3.14, what the blob leaves out: the frame states of a coroutine
    #: suspended in an await and of a finished one, and the awaited object's stack slot.
    awaits: Optional[AwaitOffsets] = None
    await_states: Tuple[int, int] = (-1, 1)
    awaited_slot: int = 1

    @property
    def size(self) -> int:
        return PREFIX.size + 8 * sum(len(fields) for _, fields in self.groups)

    def parse(self, blob: bytes) -> Blob:
        """``{group: {field: value}}`` from a blob of at least ``self.size`` bytes."""
        values = struct.unpack_from("<%dQ" % ((self.size - PREFIX.size) // 8), blob, PREFIX.size)
        out: Blob = {}
        pos = 0
        for group, fields in self.groups:
            out[group] = dict(zip(fields, values[pos:pos + len(fields)]))
            pos += len(fields)
        return out

    def build(self, blob: bytes, version_string: str,
              target_minor: Optional[Tuple[int, ...]] = None) -> Layout:
        """Check the blob and turn it into a ``Layout``; UnsupportedPython if it looks wrong.

        ``target_minor`` newer than ``self.minor`` means this spec is tried on a newer minor
        (the layout is then marked ``guessed_from``).
        """
        target = self.minor if target_minor is None else tuple(target_minor)
        guessed = target != self.minor
        cookie, _, free_threaded = PREFIX.unpack_from(blob)
        if cookie != COOKIE:
            raise UnsupportedPython("Python %s: no _Py_DebugOffsets at _PyRuntime (the "
                                    "xdebugpy cookie is missing)" % version_string)
        if free_threaded:
            raise UnsupportedPython("Python %s is a free-threaded build, which spyrec cannot "
                                    "walk yet" % version_string)
        d = self.parse(blob)
        problem = blob_problem(d)
        if problem and guessed:
            raise UnsupportedPython(
                "Python %s is newer than spyrec knows, and its _Py_DebugOffsets do not match "
                "the %d.%d field list (%s): spyrec needs a %d.%d entry in "
                "spyrec/layouts/debug_offsets.py"
                % (version_string, self.minor[0], self.minor[1], problem, target[0], target[1]))
        if problem:
            raise UnsupportedPython("Python %s: its _Py_DebugOffsets do not look like a %d.%d "
                                    "release build's (%s); a debug build, or a pre-release "
                                    "with another layout?"
                                    % (version_string, self.minor[0], self.minor[1], problem))
        layout = _layout_from(d, self)
        if guessed:
            layout = replace(layout, guessed_from=self.minor,
                             name="%s (guessed for %d.%d)" % (layout.name, target[0], target[1]))
        return layout


#: Values every x86-64 GIL release build from 3.13 on has [V 3.13.0, 3.14.10, 3.15.2].  Apart
#: from the thread-state links they are public object layouts, whose groups come after the
#: runtime, interpreter, thread, frame and code groups: a field list that is off by one field
#: anywhere before them reads other values here.  A debug build (``Py_TRACE_REFS``: a larger
#: ``PyObject``) fails them too.
FIXED_VALUES = (
    ("thread_state", "prev", 0), ("thread_state", "next", 8), ("thread_state", "interp", 16),
    ("pyobject", "size", 16), ("pyobject", "ob_type", 8),
    ("type_object", "tp_name", 24), ("type_object", "tp_flags", 168),
    ("tuple_object", "ob_size", 16),
    ("list_object", "size", 40), ("list_object", "ob_item", 24), ("list_object", "ob_size", 16),
    ("dict_object", "size", 48), ("dict_object", "ma_keys", 32), ("dict_object", "ma_values", 40),
    ("float_object", "size", 24), ("float_object", "ob_fval", 16),
    ("long_object", "size", 32), ("long_object", "lv_tag", 16), ("long_object", "ob_digit", 24),
    ("bytes_object", "size", 40), ("bytes_object", "ob_size", 16), ("bytes_object", "ob_sval", 32),
    ("unicode_object", "size", 64), ("unicode_object", "state", 32),
    ("unicode_object", "length", 16), ("unicode_object", "asciiobject_size", 40),
)

#: Plausible sizeof() of the structs whose offsets the walker uses (x86-64, GIL builds: 3.13.0
#: to 3.15.2 span 283-347 KiB, 190-221 KiB, 304-888, 80-88, 208-216 and 416-424 bytes).
SIZE_RANGES = {
    "runtime_state": (1 << 10, 1 << 24), "interpreter_state": (1 << 10, 1 << 24),
    "thread_state": (128, 1 << 16), "interpreter_frame": (48, 1024),
    "code_object": (128, 1024), "type_object": (400, 1024),
}

#: Fields the walker reads, with their alignment (pointers 8, ints 4, the owner byte 1).
USED_FIELDS = {
    "runtime_state": (("interpreters_head", 8),),
    "interpreter_state": (("next", 8), ("threads_head", 8), ("imports_modules", 8),
                          ("ceval_gil", 8), ("gil_runtime_state", 8),
                          ("gil_runtime_state_holder", 8), ("gil_runtime_state_locked", 4)),
    "thread_state": (("next", 8), ("interp", 8), ("current_frame", 8), ("thread_id", 8),
                     ("native_thread_id", 8), ("datastack_chunk", 8), ("base_frame", 8)),
    "interpreter_frame": (("previous", 8), ("executable", 8), ("instr_ptr", 8), ("owner", 1)),
    "code_object": (("filename", 8), ("name", 8), ("qualname", 8), ("linetable", 8),
                    ("firstlineno", 4), ("co_code_adaptive", 2)),
}


def blob_problem(d: Blob) -> str:
    """The first reason the parsed blob cannot be right, or "" (see the module docstring)."""
    for group, name, want in FIXED_VALUES:
        if d[group][name] != want:
            return "%s.%s = %d, expected %d" % (group, name, d[group][name], want)
    for group, (lo, hi) in SIZE_RANGES.items():
        if not lo <= d[group]["size"] <= hi:
            return "%s.size = %d, expected %d to %d" % (group, d[group]["size"], lo, hi)
    for group, names in USED_FIELDS.items():
        size = d[group]["size"]
        for name, align in names:
            if name not in d[group]:  # a field of later minors only
                continue
            off = d[group][name]
            if off % align or off + align > size:
                return "%s.%s = %d does not fit a %d-byte field in %d bytes" % (
                    group, name, off, align, size)
    interp = d["interpreter_state"]
    gil = interp["gil_runtime_state"]
    for name, want in (("gil_runtime_state_holder", 8), ("gil_runtime_state_locked", 16)):
        if interp[name] != gil + want:  # _gil_runtime_state: last_holder @8, locked @16
            return "interpreter_state.%s = %d, expected gil_runtime_state + %d = %d" % (
                name, interp[name], want, gil + want)
    return ""


def _gc_collecting(d: Blob) -> Optional[int]:
    """``interp->gc.collecting`` as an offset in the interpreter state, or None when the blob
    puts it outside its structs (only the GC marks are lost then, not the walk)."""
    gc, interp = d.get("gc", {}), d["interpreter_state"]
    at = gc.get("collecting")
    if at is None or at % 4 or at + 4 > gc["size"] or interp["gc"] + gc["size"] > interp["size"]:
        return None
    return interp["gc"] + at


def _awaits(d: Blob, frame: Dict[str, int], spec: "DebugOffsetsSpec") -> Optional[AwaitOffsets]:
    """3.14+: what a suspended coroutine awaits, from the blob's ``gi_frame_state`` and
    ``stackpointer``, and the spec's frame states."""
    gen = d.get("gen_object", {})
    if "gi_frame_state" not in gen or "stackpointer" not in frame:
        return None
    if not (gen["gi_frame_state"] < gen["size"] and frame["stackpointer"] % 8 == 0
            and frame["localsplus"] % 8 == 0):
        return None
    suspended, completed = spec.await_states
    return AwaitOffsets(frame_state=gen["gi_frame_state"], suspended=suspended,
                        completed=completed, stack_top=frame["stackpointer"],
                        stack_top_is_pointer=True, localsplus=frame["localsplus"],
                        awaited_slot=spec.awaited_slot)


def _layout_from(d: Blob, spec: DebugOffsetsSpec) -> Layout:
    rt, it, ts = d["runtime_state"], d["interpreter_state"], d["thread_state"]
    fr, co, uni = d["interpreter_frame"], d["code_object"], d["unicode_object"]
    by, ty = d["bytes_object"], d["type_object"]
    gil_base = it["gil_runtime_state"]  # interp->_gil; locked/holder are given relative to interp
    ascii_size = uni["asciiobject_size"]
    objects = replace(spec.objects, tp_flags=ty["tp_flags"],
                      ma_keys=d["dict_object"]["ma_keys"],
                      ma_values=d["dict_object"]["ma_values"],
                      long_size=d["long_object"]["lv_tag"],
                      ob_digit=d["long_object"]["ob_digit"])
    if "tp_basicsize" in ty:  # 3.15+
        objects = replace(objects, tp_basicsize=ty["tp_basicsize"],
                          tp_dictoffset=ty["tp_dictoffset"])
    if "heap_type_object" in d:  # 3.15+
        objects = replace(objects, ht_cached_keys=d["heap_type_object"]["ht_cached_keys"])
    return Layout(
        name="debug_offsets %d.%d" % spec.minor,
        runtime=RuntimeOffsets(interpreters_head=rt["interpreters_head"], gil=None),
        interp=InterpreterOffsets(next=it["next"], tstate_head=it["threads_head"],
                                  modules=it["imports_modules"], ceval_gil=it["ceval_gil"],
                                  gil=gil_base,
                                  code_object_generation=it.get("code_object_generation"),
                                  gc_collecting=_gc_collecting(d)),
        # switch_number is not listed; it is the unsigned long after ``locked`` (checked at 16).
        gil=GilOffsets(last_holder=it["gil_runtime_state_holder"] - gil_base,
                       locked=it["gil_runtime_state_locked"] - gil_base,
                       switch_number=it["gil_runtime_state_locked"] - gil_base + 8,
                       size=it["gil_runtime_state_locked"] - gil_base + 16),
        thread=ThreadOffsets(prev=ts["prev"], next=ts["next"], interp=ts["interp"],
                             frame=ts["current_frame"], thread_id=ts["thread_id"],
                             native_thread_id=ts["native_thread_id"],
                             datastack_chunk=ts["datastack_chunk"],
                             # datastack_top directly follows datastack_chunk in every
                             # version that has chunks (pystate.h [V 3.11-3.15]); the blob
                             # omits it.
                             datastack_top=ts["datastack_chunk"] + 8,
                             size=ts["size"], base_frame=ts.get("base_frame")),
        frame=FrameOffsets(code=fr["executable"], previous=fr["previous"], instr=fr["instr_ptr"],
                           owner=fr["owner"],
                           size=max(fr["executable"] + 8, fr["previous"] + 8,
                                    fr["instr_ptr"] + 8, fr["owner"] + 1)),
        code=CodeOffsets(co_firstlineno=co["firstlineno"], co_filename=co["filename"],
                         co_name=co["name"], co_qualname=co["qualname"],
                         co_linetable=co["linetable"], co_code_adaptive=co["co_code_adaptive"],
                         co_flags=spec.co_flags, co_version=spec.co_version,
                         size=co["size"]),
        strings=StringOffsets(ascii_data=ascii_size,
                              compact_data=uni.get("compactunicodeobject_size",
                                                   ascii_size + spec.compact_unicode_extra),
                              length=uni["length"], state=uni["state"],
                              bytes_size=by["ob_size"], bytes_data=by["ob_sval"]),
        chunk=spec.chunk,
        objects=objects,
        ob_type=d["pyobject"]["ob_type"],
        gen_iframe=d["gen_object"]["gi_iframe"] if "gen_object" in d else spec.gen_iframe,
        task=spec.task,
        awaits=_awaits(d, fr, spec) or spec.awaits,
        frame_kind="iframe",
        thread_frame_kind="current_frame",
        instr_kind="code_pointer",
        linetable_kind="locations311",
        gil_kind="interp",
        max_frame_owner=spec.max_frame_owner,
        skip_owner_from=spec.skip_owner_from,
        executable_may_be_non_code=True,
        frame_has_ob_type=False,
        executable_tag_mask=spec.executable_tag_mask,
    )


# -- the field lists ------------------------------------------------------------------------

_RUNTIME: Groups = (("runtime_state", ("size", "finalizing", "interpreters_head")),)
_INTERP_313 = ("size", "id", "next", "threads_head", "gc", "imports_modules", "sysdict",
               "builtins", "ceval_gil", "gil_runtime_state", "gil_runtime_state_enabled",
               "gil_runtime_state_locked", "gil_runtime_state_holder")
#: 3.14: ``threads_main`` after ``threads_head``; the code-object and TLBC generations last.
_INTERP_314 = (_INTERP_313[:4] + ("threads_main",) + _INTERP_313[4:]
               + ("code_object_generation", "tlbc_generation"))
_THREAD_313 = ("size", "prev", "next", "interp", "current_frame", "thread_id",
               "native_thread_id", "datastack_chunk", "status")
_FRAME_313 = ("size", "previous", "executable", "instr_ptr", "localsplus", "owner")
_CODE_313 = ("size", "filename", "name", "qualname", "linetable", "firstlineno", "argcount",
             "localsplusnames", "localspluskinds", "co_code_adaptive")
_TYPE_313 = ("size", "tp_name", "tp_repr", "tp_flags")
_SEQUENCES: Groups = (("tuple_object", ("size", "ob_item", "ob_size")),
                      ("list_object", ("size", "ob_item", "ob_size")))
_SET: Groups = (("set_object", ("size", "used", "table", "mask")),)
_NUMBERS_AND_DICT: Groups = (
    ("dict_object", ("size", "ma_keys", "ma_values")),
    ("float_object", ("size", "ob_fval")),
    ("long_object", ("size", "lv_tag", "ob_digit")),
    ("bytes_object", ("size", "ob_size", "ob_sval")),
)
_UNICODE_313 = ("size", "state", "length", "asciiobject_size")
_TAIL_314: Groups = (
    ("gen_object", ("size", "gi_name", "gi_iframe", "gi_frame_state")),
    ("llist_node", ("next", "prev")),
    ("debugger_support", ("eval_breaker", "remote_debugger_support", "remote_debugging_enabled",
                          "debugger_pending_call", "debugger_script_path",
                          "debugger_script_path_size")),
)

#: Include/internal/pycore_dict.h and pycore_object.h of v3.13.0, checked against DWARF
#: (tests/test_layouts.py): 3.11's keys header; PyDictValues gained capacity, size, embedded
#: and valid bytes before values[]; instances keep values inline.  Unchanged in 3.14 and 3.15
#: GIL builds [V: exact thread names from threading._active, tests/test_walker.py].
_OBJECTS_313 = ObjectOffsets(ht_cached_keys=880, dict_keys_kind="log2", dk_nentries=24,
                             dk_indices=32, dict_values=8, long_kind="lv_tag",
                             instance_dict="inline313")

#: 3.13 (584 bytes).  Owners: THREAD 0, GENERATOR 1, FRAME_OBJECT 2, CSTACK 3 (skipped).
V3_13 = DebugOffsetsSpec(
    minor=(3, 13),
    groups=_RUNTIME + (
        ("interpreter_state", _INTERP_313),
        ("thread_state", _THREAD_313),
        ("interpreter_frame", _FRAME_313),
        ("code_object", _CODE_313),
        ("pyobject", ("size", "ob_type")),
        ("type_object", _TYPE_313),
    ) + _SEQUENCES + _NUMBERS_AND_DICT + (
        ("unicode_object", _UNICODE_313),
        ("gc", ("size", "collecting")),
    ),
    max_frame_owner=3,
    skip_owner_from=3,
    objects=_OBJECTS_313,
    gen_iframe=72,  # PyGenObject.gi_iframe (Include/cpython/genobject.h v3.13.0)
    task=TaskOffsets(task_coro=120, task_name=128),
    # gi_frame_state (Include/cpython/genobject.h); FRAME_SUSPENDED_YIELD_FROM -1
    # (Include/internal/pycore_frame.h v3.13.0)
    awaits=AwaitOffsets(frame_state=67, suspended=-1),
)

#: 3.14 (760 bytes).  Owners: THREAD 0, GENERATOR 1, FRAME_OBJECT 2, INTERPRETER 3 (the entry
#: frame of each _PyEval_EvalFrameDefault run, on the C stack, f_executable None), CSTACK 4;
#: 3 and 4 are skipped [V 3.14.10: an owner-3 frame at the bottom of every thread and at each
#: C->Python re-entry].  ``f_executable`` is a ``_PyStackRef``: Py_TAG_REFCNT (bit 0) is set on
#: borrowed references [V: on the entry frames' None and on the ``__init__`` cleanup shim's
#: code]; clearing the two low bits is safe since objects are 16-aligned.
#: PyHeapTypeObject.ht_cached_keys: sizeof(PyTypeObject) 416 + as_async 32 + as_number 288 +
#: as_mapping 24 + as_sequence 80 + as_buffer 16 + ht_name, ht_slots, ht_qualname = 880.
V3_14 = DebugOffsetsSpec(
    minor=(3, 14),
    groups=_RUNTIME + (
        ("interpreter_state", _INTERP_314),
        ("thread_state", _THREAD_313),
        ("interpreter_frame", _FRAME_313 + ("stackpointer", "tlbc_index")),
        ("code_object", _CODE_313 + ("co_tlbc",)),
        ("pyobject", ("size", "ob_type")),
        ("type_object", _TYPE_313),
    ) + _SEQUENCES + _SET + _NUMBERS_AND_DICT + (
        ("unicode_object", _UNICODE_313),
        ("gc", ("size", "collecting")),
    ) + _TAIL_314,
    max_frame_owner=4,
    skip_owner_from=3,
    executable_tag_mask=3,
    objects=_OBJECTS_313,
)

#: 3.15 (888 bytes).  Owners: FRAME_OWNED_BY_CSTACK is gone, INTERPRETER 3 (skipped) is the
#: highest [V 3.15.2: owner-3 frames at each entry, and ``tstate->base_frame`` at the bottom].
#: Py_INT_TAG (3) and Py_TAG_INVALID (2) join Py_TAG_REFCNT in pycore_stackref.h; an
#: executable is never a tagged int, so the same mask applies.
V3_15 = DebugOffsetsSpec(
    minor=(3, 15),
    groups=_RUNTIME + (
        ("interpreter_state", _INTERP_314),
        ("thread_state", _THREAD_313[:5] + ("base_frame", "last_profiled_frame",
                                            "last_profiled_frame_seq") + _THREAD_313[5:]
         + ("holds_gil", "gil_requested", "current_exception", "exc_state")),
        ("err_stackitem", ("exc_value",)),
        ("interpreter_frame", _FRAME_313 + ("stackpointer", "tlbc_index")),
        ("code_object", _CODE_313 + ("co_tlbc",)),
        ("pyobject", ("size", "ob_type")),
        ("type_object", _TYPE_313 + ("tp_basicsize", "tp_dictoffset")),
        ("heap_type_object", ("size", "ht_cached_keys")),
    ) + _SEQUENCES + _SET + _NUMBERS_AND_DICT + (
        ("unicode_object", _UNICODE_313 + ("compactunicodeobject_size",)),
        ("gc", ("size", "collecting", "frame", "generation_stats_size", "generation_stats")),
    ) + _TAIL_314,
    max_frame_owner=3,
    skip_owner_from=3,
    executable_tag_mask=3,
    objects=_OBJECTS_313,
    # PyFrameState renumbered: SUSPENDED_YIELD_FROM 2, CLEARED 5 (COMPLETED is gone); the
    # awaited object lies under the value being sent (pycore_genobject.h, genobject.c v3.15)
    await_states=(2, 5),
    awaited_slot=2,
)
