"""CPython 3.8 and 3.9: heap ``PyFrameObject`` chains, ``co_lnotab`` line tables.

Numbers: ``offsetof``/``sizeof`` printed by a C file compiled with
``-DPy_BUILD_CORE`` against the pyenv 3.8.18 / 3.9.18 headers (``include/python3.X`` and
``internal/``), cross-checked against the DWARF of each ``libpython3.X.so.1.0``, and walked live
(tests/test_walker.py keeps checking them against real processes).  Mirrors the v3.8.18 and
v3.9.18 tags: Include/cpython/pystate.h (``struct _ts``), Include/internal/pycore_pystate.h
(3.8) / pycore_interp.h (3.9) (``struct _is``), Include/internal/pycore_runtime.h
(``_PyRuntimeState``), Include/frameobject.h, Include/code.h, Include/cpython/unicodeobject.h.

3.9 keeps 3.8's thread state, frame and code object; only ``_PyRuntimeState`` (the GIL moved
from offset 1160 to 360, as ``ceval`` lost its per-runtime pending-calls block) and
``PyInterpreterState`` (``modules`` moved from 56 to 856) differ.
"""

from spyrec.layouts.base import (AwaitOffsets, CodeOffsets, FrameOffsets, InterpreterOffsets, Layout,
                                 ObjectOffsets, RuntimeOffsets, StringOffsets, TaskOffsets,
                                 ThreadOffsets)

_THREAD = ThreadOffsets(
    prev=0, next=8, interp=16,
    frame=24,  # struct _frame *frame
    thread_id=176,
    native_thread_id=None, datastack_chunk=None, datastack_top=None,
    size=264,
    unique_id=256,  # uint64_t id
)

#: A coroutine is suspended in an await when ``f_stacktop`` is set and YIELD_FROM (72) follows
#: ``f_lasti`` in ``co_code`` (genobject.c, Include/frameobject.h, Include/code.h 3.8, 3.9).
_AWAITS = AwaitOffsets(frame_state=None, yield_from_opcode=72, co_code=48, stack_top=72,
                       stack_top_is_pointer=True, valuestack=64,
                       localsplus=360)  # after f_blockstack[CO_MAXBLOCKS] at 120

_FRAME = FrameOffsets(
    code=32,  # f_code
    previous=24,  # f_back
    instr=104,  # int f_lasti: byte offset of the last instruction, -1 before the first
    owner=None,
    size=108,
    gen=96,  # PyObject *f_gen
    executing=116,  # char f_executing
)

_CODE = CodeOffsets(
    co_firstlineno=40,
    co_filename=104,
    co_name=112,
    co_qualname=None,
    co_linetable=120,  # co_lnotab
    co_code_adaptive=None,
    co_flags=36,
    size=176,
    shape=((48, "Q"), (56, "Q"), (64, "Q"), (32, "i")),  # co_code, co_consts, co_names, co_stacksize
)

_STRINGS = StringOffsets(ascii_data=48, compact_data=72)

V3_8 = Layout(
    name="v3_8",
    runtime=RuntimeOffsets(
        interpreters_head=32,
        gil=1152,  # ceval.gil; last_holder at 1160, locked at 1168
        gc_collecting=544,  # gc at 344, collecting at +200
    ),
    interp=InterpreterOffsets(next=0, tstate_head=8, modules=56),
    thread=_THREAD,
    frame=_FRAME,
    code=_CODE,
    strings=_STRINGS,
    objects=ObjectOffsets(ht_cached_keys=872),
    gen_frame_pointer=16,  # PyGenObject.gi_frame
    awaits=_AWAITS,
    task=TaskOffsets(task_coro=112, task_name=120),
    frame_kind="pyframe",
    thread_frame_kind="frame",
    instr_kind="lasti_bytes",
    linetable_kind="lnotab",
    gil_kind="runtime",
)

V3_9 = Layout(
    name="v3_8 (3.9 runtime)",
    runtime=RuntimeOffsets(
        interpreters_head=32,
        gil=352,  # ceval.gil; last_holder at 360, locked at 368
    ),
    interp=InterpreterOffsets(next=0, tstate_head=8, modules=856,
                              gc_collecting=816),  # gc at 616, collecting at +200
    thread=_THREAD,
    frame=_FRAME,
    code=_CODE,
    strings=_STRINGS,
    objects=ObjectOffsets(ht_cached_keys=864),
    gen_frame_pointer=16,
    awaits=_AWAITS,
    task=TaskOffsets(task_coro=152, task_name=160),  # the Future grew by _cancel_message
    frame_kind="pyframe",
    thread_frame_kind="frame",
    instr_kind="lasti_bytes",
    linetable_kind="lnotab",
    gil_kind="runtime",
)
