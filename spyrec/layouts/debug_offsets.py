"""CPython 3.13+: the layout comes from the target's own ``_Py_DebugOffsets``.

``_Py_DebugOffsets`` is the first member of ``_PyRuntimeState``, statically initialised, so it
sits at ``_PyRuntime`` from process load (Include/internal/pycore_runtime.h, v3.13.0;
dossier §2).  Only its prefix is fixed: ``char cookie[8] = "xdebugpy"``, ``u64 version``
(PY_VERSION_HEX), ``u64 free_threaded``.  After that come groups of u64 values, in most groups
``size`` (sizeof the C struct) first and then byte offsets inside that struct.

The *values* may change between patch releases (3.14.5 moved ``imports.modules``), so they are
always read from the target.  The *list of fields* changes every minor (3.14 inserts
``threads_main`` in the interpreter group, shifting everything after it), so each minor gets a
small ``DebugOffsetsSpec``: its field names in blob order, plus the facts the blob does not
carry (frame owners, string header sizes, stack-chunk header).  Adding 3.14 or 3.15 means adding
one such description and registering it in ``spyrec.layouts.LAYOUTS``.

Provenance: the 3.13 field list is from the dossier §2.2, confirmed by dumping the 584-byte blob
of a live 3.13.0 (every value equals the gcc ``offsetof`` table).  The 3.14 list (§2.3) is from
CPython's headers only [src], never run here, hence not registered yet.
"""

import struct
from dataclasses import dataclass, field, replace
from typing import Dict, Tuple

from spyrec.errors import UnsupportedPython
from spyrec.layouts.base import (ChunkOffsets, CodeOffsets, FrameOffsets, GilOffsets,
                                 InterpreterOffsets, Layout, ObjectOffsets, RuntimeOffsets,
                                 StringOffsets, ThreadOffsets)

COOKIE = b"xdebugpy"
PREFIX = struct.Struct("<8sQQ")  # cookie, version (PY_VERSION_HEX), free_threaded

Groups = Tuple[Tuple[str, Tuple[str, ...]], ...]


@dataclass(frozen=True)
class DebugOffsetsSpec:
    """How to read one minor's ``_Py_DebugOffsets`` and what it leaves out."""

    minor: Tuple[int, int]
    groups: Groups  # (group, fields) in blob order, each field a u64
    #: Frame owners (pycore_frame.h): the highest valid value, and the first one that marks a
    #: C-stack shim / entry frame that is not user code.
    max_frame_owner: int
    skip_owner_from: int
    #: sizeof(PyCompactUnicodeObject) - sizeof(PyASCIIObject): utf8_length + utf8 pointer in a
    #: GIL build [V 3.13]; the blob only has ``asciiobject_size``.
    compact_unicode_extra: int = 16
    chunk: ChunkOffsets = field(default_factory=ChunkOffsets)
    #: Object layouts for thread names; the blob's dict, long and tp_flags values override
    #: these (the rest, e.g. ht_cached_keys and the dict-keys header, is not in the blob).
    objects: ObjectOffsets = field(default_factory=lambda: ObjectOffsets(ht_cached_keys=880))

    @property
    def size(self) -> int:
        return PREFIX.size + 8 * sum(len(fields) for _, fields in self.groups)

    def parse(self, blob: bytes) -> Dict[str, Dict[str, int]]:
        """``{group: {field: value}}`` from a blob of at least ``self.size`` bytes."""
        values = struct.unpack_from("<%dQ" % ((self.size - PREFIX.size) // 8), blob, PREFIX.size)
        out: Dict[str, Dict[str, int]] = {}
        pos = 0
        for group, fields in self.groups:
            out[group] = dict(zip(fields, values[pos:pos + len(fields)]))
            pos += len(fields)
        return out

    def build(self, blob: bytes, version_string: str) -> Layout:
        """Check the blob and turn it into a ``Layout``; UnsupportedPython if it looks wrong."""
        cookie, _, free_threaded = PREFIX.unpack_from(blob)
        if cookie != COOKIE:
            raise UnsupportedPython("Python %s: _Py_DebugOffsets cookie missing" % version_string)
        if free_threaded:
            raise UnsupportedPython("Python %s is a free-threaded build, which spyrec cannot "
                                    "walk yet" % version_string)
        d = self.parse(blob)
        problem = _sanity_problem(d)
        if problem:
            raise UnsupportedPython("Python %s: unexpected _Py_DebugOffsets (%s); a debug or "
                                    "unusual build?" % (version_string, problem))
        return _layout_from(d, self, version_string)


def _sanity_problem(d: Dict[str, Dict[str, int]]) -> str:
    """The §2.5 checks: a GIL release build has these fixed values, and offsets fit their struct."""
    fixed = [("pyobject", "size", 16), ("pyobject", "ob_type", 8), ("bytes_object", "ob_sval", 32),
             ("unicode_object", "length", 16), ("unicode_object", "state", 32),
             ("thread_state", "prev", 0), ("thread_state", "next", 8),
             ("thread_state", "interp", 16)]
    for group, name, want in fixed:
        if d[group][name] != want:
            return "%s.%s = %d, expected %d" % (group, name, d[group][name], want)
    pointers = {"runtime_state": ("interpreters_head",),
                "interpreter_state": ("next", "threads_head", "imports_modules", "ceval_gil"),
                "thread_state": ("next", "interp", "current_frame", "datastack_chunk"),
                "interpreter_frame": ("previous", "executable", "instr_ptr"),
                "code_object": ("filename", "name", "qualname", "linetable")}
    for group, names in pointers.items():
        size = d[group]["size"]
        for name in names:
            off = d[group][name]
            if off % 8 or off + 8 > size:
                return "%s.%s = %d does not fit a pointer in %d bytes" % (group, name, off, size)
    return ""


def _layout_from(d: Dict[str, Dict[str, int]], spec: DebugOffsetsSpec, version: str) -> Layout:
    rt, it, ts = d["runtime_state"], d["interpreter_state"], d["thread_state"]
    fr, co, uni = d["interpreter_frame"], d["code_object"], d["unicode_object"]
    by = d["bytes_object"]
    gil_base = it["gil_runtime_state"]  # interp->_gil; locked/holder are given relative to interp
    ascii_size = uni["asciiobject_size"]
    return Layout(
        name="debug_offsets %d.%d" % spec.minor,
        runtime=RuntimeOffsets(interpreters_head=rt["interpreters_head"], gil=None),
        interp=InterpreterOffsets(next=it["next"], tstate_head=it["threads_head"],
                                  modules=it["imports_modules"], ceval_gil=it["ceval_gil"],
                                  gil=gil_base),
        gil=GilOffsets(last_holder=it["gil_runtime_state_holder"] - gil_base,
                       locked=it["gil_runtime_state_locked"] - gil_base,
                       size=max(it["gil_runtime_state_holder"], it["gil_runtime_state_locked"])
                       - gil_base + 8),
        thread=ThreadOffsets(prev=ts["prev"], next=ts["next"], interp=ts["interp"],
                             frame=ts["current_frame"], thread_id=ts["thread_id"],
                             native_thread_id=ts["native_thread_id"],
                             datastack_chunk=ts["datastack_chunk"],
                             # datastack_top directly follows datastack_chunk in every
                             # version that has chunks (pystate.h); the blob omits it.
                             datastack_top=ts["datastack_chunk"] + 8,
                             size=ts["size"]),
        frame=FrameOffsets(code=fr["executable"], previous=fr["previous"], instr=fr["instr_ptr"],
                           owner=fr["owner"],
                           size=max(fr["executable"] + 8, fr["previous"] + 8,
                                    fr["instr_ptr"] + 8, fr["owner"] + 1)),
        code=CodeOffsets(co_firstlineno=co["firstlineno"], co_filename=co["filename"],
                         co_name=co["name"], co_qualname=co["qualname"],
                         co_linetable=co["linetable"], co_code_adaptive=co["co_code_adaptive"],
                         size=co["size"]),
        strings=StringOffsets(ascii_data=ascii_size,
                              compact_data=ascii_size + spec.compact_unicode_extra,
                              length=uni["length"], state=uni["state"],
                              bytes_size=by["ob_size"], bytes_data=by["ob_sval"]),
        chunk=spec.chunk,
        objects=replace(spec.objects, tp_flags=d["type_object"]["tp_flags"],
                        ma_keys=d["dict_object"]["ma_keys"],
                        ma_values=d["dict_object"]["ma_values"],
                        long_size=d["long_object"]["lv_tag"],
                        ob_digit=d["long_object"]["ob_digit"]),
        ob_type=d["pyobject"]["ob_type"],
        frame_kind="iframe",
        thread_frame_kind="current_frame",
        instr_kind="code_pointer",
        linetable_kind="locations311",
        gil_kind="interp",
        max_frame_owner=spec.max_frame_owner,
        skip_owner_from=spec.skip_owner_from,
        executable_may_be_non_code=True,
        frame_has_ob_type=False,
    )


# Object groups shared by 3.13 and 3.14 (each: size first).
_OBJECTS_313: Groups = (
    ("pyobject", ("size", "ob_type")),
    ("type_object", ("size", "tp_name", "tp_repr", "tp_flags")),
    ("tuple_object", ("size", "ob_item", "ob_size")),
    ("list_object", ("size", "ob_item", "ob_size")),
    ("dict_object", ("size", "ma_keys", "ma_values")),
    ("float_object", ("size", "ob_fval")),
    ("long_object", ("size", "lv_tag", "ob_digit")),
    ("bytes_object", ("size", "ob_size", "ob_sval")),
    ("unicode_object", ("size", "state", "length", "asciiobject_size")),
    ("gc", ("size", "collecting")),
)

#: 3.13 (584 bytes).  Owners: THREAD 0, GENERATOR 1, FRAME_OBJECT 2, CSTACK 3 (skipped).
V3_13 = DebugOffsetsSpec(
    minor=(3, 13),
    groups=(
        ("runtime_state", ("size", "finalizing", "interpreters_head")),
        ("interpreter_state", ("size", "id", "next", "threads_head", "gc", "imports_modules",
                               "sysdict", "builtins", "ceval_gil", "gil_runtime_state",
                               "gil_runtime_state_enabled", "gil_runtime_state_locked",
                               "gil_runtime_state_holder")),
        ("thread_state", ("size", "prev", "next", "interp", "current_frame", "thread_id",
                          "native_thread_id", "datastack_chunk", "status")),
        ("interpreter_frame", ("size", "previous", "executable", "instr_ptr", "localsplus",
                               "owner")),
        ("code_object", ("size", "filename", "name", "qualname", "linetable", "firstlineno",
                         "argcount", "localsplusnames", "localspluskinds", "co_code_adaptive")),
    ) + _OBJECTS_313,
    max_frame_owner=3,
    skip_owner_from=3,
    # Include/internal/pycore_dict.h and pycore_object.h of v3.13.0, checked against DWARF
    # (tests/test_layouts.py): 3.11's keys header; PyDictValues gained capacity, size,
    # embedded and valid bytes before values[]; instances keep values inline.
    objects=ObjectOffsets(ht_cached_keys=880, dict_keys_kind="log2", dk_nentries=24, dk_indices=32,
                          dict_values=8, long_kind="lv_tag", instance_dict="inline313"),
)

#: 3.14 (760 bytes) [src only, NOT registered]: supporting it also needs the walker to mask the
#: ``_PyStackRef`` tag bits of ``f_executable`` (``& ~3``) and to treat owner 3 as INTERPRETER
#: and 4 as CSTACK (both skipped), and thread names come from /proc/PID/task/TID/comm.
V3_14 = DebugOffsetsSpec(
    minor=(3, 14),
    groups=(
        ("runtime_state", ("size", "finalizing", "interpreters_head")),
        ("interpreter_state", ("size", "id", "next", "threads_head", "threads_main", "gc",
                               "imports_modules", "sysdict", "builtins", "ceval_gil",
                               "gil_runtime_state", "gil_runtime_state_enabled",
                               "gil_runtime_state_locked", "gil_runtime_state_holder",
                               "code_object_generation", "tlbc_generation")),
        ("thread_state", ("size", "prev", "next", "interp", "current_frame", "thread_id",
                          "native_thread_id", "datastack_chunk", "status")),
        ("interpreter_frame", ("size", "previous", "executable", "instr_ptr", "localsplus",
                               "owner", "stackpointer", "tlbc_index")),
        ("code_object", ("size", "filename", "name", "qualname", "linetable", "firstlineno",
                         "argcount", "localsplusnames", "localspluskinds", "co_code_adaptive",
                         "co_tlbc")),
        ("pyobject", ("size", "ob_type")),
        ("type_object", ("size", "tp_name", "tp_repr", "tp_flags")),
        ("tuple_object", ("size", "ob_item", "ob_size")),
        ("list_object", ("size", "ob_item", "ob_size")),
        ("set_object", ("size", "used", "table", "mask")),
        ("dict_object", ("size", "ma_keys", "ma_values")),
        ("float_object", ("size", "ob_fval")),
        ("long_object", ("size", "lv_tag", "ob_digit")),
        ("bytes_object", ("size", "ob_size", "ob_sval")),
        ("unicode_object", ("size", "state", "length", "asciiobject_size")),
        ("gc", ("size", "collecting")),
        ("gen_object", ("size", "gi_name", "gi_iframe", "gi_frame_state")),
        ("llist_node", ("next", "prev")),
        ("debugger_support", ("eval_breaker", "remote_debugger_support",
                              "remote_debugging_enabled", "debugger_pending_call",
                              "debugger_script_path", "debugger_script_path_size")),
    ),
    max_frame_owner=4,
    skip_owner_from=3,
)
