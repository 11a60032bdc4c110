"""What the analyser shows of recorded frames: which frames are the interpreter's own (hidden),
what stands for a stack without Python frames, and how a frame is labelled.

Every view, filter and export reads the tables ``Recording.from_data`` builds with these rules,
so they apply everywhere at once, to recordings made by any recorder version.
"""

import re

import numpy as np
import pandas as pd

import spyformat

#: The file of every code object CPython 3.12 makes for itself (``_Py_MakeShimCode``): the
#: ``<interpreter trampoline>`` of calls from C into Python, and the ``__init__`` clean-up.
SHIM_FILE = "<shim>"
TRAMPOLINE = "<interpreter trampoline>"
#: CPython 3.13's ``_Py_InitCleanup`` is a static code object named ``__init__`` whose file is
#: ``__init__`` too, with no line anywhere (the recorder leaves it out; older recorders did not).
INIT_CLEANUP = "__init__"

#: The frame that stands for a sample whose stack holds no Python frame: a thread running only
#: C code, just started, or ending.  Its time is real, so it gets a row and a root of its own.
NO_PYTHON_FRAMES = "<no Python frames>"
#: The frame innermost in a sample taken while the garbage collector ran (the recorder's mark).
GC_FRAME = spyformat.GC_FRAME
#: The frame that stands for code the recorder found freed before it could read it (see
#: formats/spy.md): its time and callers are known, not its name.
FREED_FRAME = spyformat.FREED_FRAME
#: Frames that stand for a state, not code: labelled by their name alone.
PSEUDO_FRAMES = (NO_PYTHON_FRAMES, GC_FRAME, FREED_FRAME)


#: What a frame's ``kind`` says: where its Python code lives (the first four, see
#: ``spyanalyze.paths.module_paths``), or that it is no Python code.
KINDS = ("user", "stdlib", "site-packages", "other", "native", "kernel")
#: The ``kind`` of the frames of each non-Python ``spyformat.FrameKind``, and their module.
_FORMAT_KINDS = {spyformat.FrameKind.NATIVE: "native", spyformat.FrameKind.KERNEL: "kernel"}


def with_format_kinds(modules, kinds, format_kinds, files):
    """``module_paths``' (modules, kinds) with the frames that are no Python code (``format_kinds``,
    the recording's ``spyformat.FrameKind`` of each frame) given their own kind, and as their
    module the file a native function is in (``deflate (libz.so.1)``), or the kind
    (``futex_wait_queue (kernel)``)."""
    modules, kinds = list(modules), list(kinds)
    for i in np.flatnonzero(np.asarray(format_kinds) != spyformat.FrameKind.PYTHON).tolist():
        kinds[i] = modules[i] = _FORMAT_KINDS.get(int(format_kinds[i]), "other")
        if kinds[i] == "native" and files[i]:
            modules[i] = str(files[i]).rsplit("/", 1)[-1]
    return modules, kinds


def format_kind(kind):
    """The ``spyformat.FrameKind`` a frame of this ``kind`` is written with."""
    return {name: value for value, name in _FORMAT_KINDS.items()}.get(kind, spyformat.FrameKind.PYTHON)


def interpreter_internal(files, names, lines):
    """Boolean array: which frames are the interpreter's own shims, not code of the program.

    Their time belongs to the Python caller below them (they only pass control on).
    """
    files = np.asarray(files, dtype=object)
    names = np.asarray(names, dtype=object)
    lines = np.asarray(lines, dtype=np.int64)
    return (files == SHIM_FILE) | (names == TRAMPOLINE) | (
        (files == INIT_CLEANUP) & (names == INIT_CLEANUP) & (lines <= 0))


#: The interpreter's own file, as a native frame's module: its executable or its library
#: (``python3.12``, ``libpython3.13t.so.1.0``).
_INTERPRETER_FILE = re.compile(r"(lib)?python\d+(\.\d+)*[a-z]*(\.so(\.\d+)*)?")
#: The interpreter's functions that only pass a call on, from a Python frame or a C function to
#: the next (Python/ceval.c, Objects/call.c, Objects/methodobject.c, Objects/descrobject.c,
#: Objects/classobject.c, Objects/typeobject.c, Objects/genobject.c; 3.8-3.15).  The functions
#: that do work of their own (``builtin_sorted``, ``list_sort_impl``, ``time_sleep``) stay.
PLUMBING = frozenset({
    "call_function", "do_call_core", "function_code_fastcall", "object_vacall", "method_vectorcall",
    "vectorcall_method", "vectorcall_unbound", "call_unbound", "call_unbound_noarg", "call_method",
    "type_call", "wrapperdescr_call", "wrapper_call", "method_call", "PyCFunction_Call",
    "PyVectorcall_Call", "_PyVectorcall_Call", "_PyEval_Vector", "gen_send_ex", "gen_send_ex2",
    "gen_iternext", "gen_send", "_PyGen_Send", "PyIter_Send", "coro_wrapper_iternext",
})
PLUMBING_PREFIXES = (
    "_PyEval_EvalFrame", "PyEval_EvalFrame", "_PyEval_EvalCode", "PyEval_EvalCode",
    "_PyFunction_Vectorcall", "_PyFunction_FastCall", "PyObject_Vectorcall", "_PyObject_Vectorcall",
    "PyObject_Call", "_PyObject_Call", "_PyObject_FastCall", "_PyObject_MakeTpCall",
    "cfunction_call", "cfunction_vectorcall", "method_vectorcall_", "_PyCFunction_FastCall",
    "_PyMethodDef_RawFastCall", "_PyMethodDescr_FastCall", "slot_tp_", "slot_nb_", "slot_sq_",
    "slot_mp_", "slot_am_", "slot_bf_", "PyEval_Call", "_PyObject_MaybeCallSpecial",
    "_Py_VectorCall", "_Py_BuiltinCall", "_Py_CallBuiltinClass", "_PyCallMethodDescriptor",
    "_Py_call_instrumentation",
)


#: The name of a native function without a symbol: its address in its file.
_UNNAMED = re.compile(r"0x[0-9a-f]+")


def interpreter_plumbing(names, modules, kinds):
    """(plumbing, unnamed): boolean arrays of which frames are native frames of the
    interpreter's call plumbing (``PLUMBING``: what ``py-spy --native`` leaves out between
    Python frames), and which the interpreter's without a name (a stripped build without its
    debug file).  A name's compiler suffix (``.isra.0``, ``.constprop.0``, ``.cold``) does not
    count."""
    interpreter = [kind == "native" and bool(_INTERPRETER_FILE.fullmatch(str(module)))
                   for module, kind in zip(modules, kinds)]
    plain = [str(name).split(".", 1)[0] for name in names]
    plumbing = [ours and (name in PLUMBING or name.startswith(PLUMBING_PREFIXES))
                for ours, name in zip(interpreter, plain)]
    unnamed = [ours and bool(_UNNAMED.fullmatch(str(name))) for ours, name in zip(interpreter, names)]
    return np.array(plumbing, dtype=bool), np.array(unnamed, dtype=bool)


def without_interpreter_plumbing(stack, native, plumbing, unnamed):
    """``stack`` (frame ids, root first) as the views show it: the native frames above its
    outermost Python frame left out (the thread's start and the interpreter's, up to the
    program's first line: ``_start``, ``Py_RunMain`` ..., ``start_thread``, ``thread_run``),
    the interpreter's call plumbing (``plumbing[frame]``) everywhere, and its frames without
    a name (``unnamed[frame]``) between Python frames, where they can only be plumbing or a
    builtin that called back into Python.  A stack without Python frames stays whole.
    ``native[frame]``: the frame is native or kernel code."""
    python = [depth for depth, frame in enumerate(stack) if not native[frame]]
    if not python:
        return stack
    first, last = python[0], python[-1]
    return tuple(frame for depth, frame in enumerate(stack[first:], first)
                 if not plumbing[frame] and not (unnamed[frame] and depth < last))


def labels(qualnames, modules, lines, sources=None):
    """``qualname (module:line)`` as py-spy prints a frame; ``qualname (module)`` when the line is
    unknown (0: the instruction has no line); just the name for ``PSEUDO_FRAMES``.  A native
    frame's line is in its ``source`` file, not its module (its library): ``qualname
    (listobject.c:2360)``."""
    qualnames = pd.Series(qualnames, dtype=object).reset_index(drop=True)
    modules = pd.Series(modules, dtype=object).reset_index(drop=True)
    lines = pd.Series(lines).reset_index(drop=True)
    if sources is not None:
        sources = pd.Series(sources, dtype=object).reset_index(drop=True).fillna("")
        named = sources != ""
        modules = modules.where(~named, sources.map(lambda path: str(path).rsplit("/", 1)[-1]))
    known = lines.fillna(0).astype(np.int64) > 0
    where = modules + np.where(known, ":" + lines.fillna(0).astype(np.int64).astype(str), "")
    text = qualnames + " (" + where + ")"
    return text.where(~qualnames.isin(PSEUDO_FRAMES), qualnames).tolist()


def label(qualname, module, line, source=None):
    """One frame's label (see ``labels``)."""
    return labels([qualname], [module], [line], None if source is None else [source])[0]
