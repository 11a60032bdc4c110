"""CPython 3.10: still heap ``PyFrameObject`` chains, but PEP 626 line tables.

Numbers from gcc ``offsetof`` against the pyenv 3.10.13 headers, checked against DWARF
and by a live walk.  Mirrors the v3.10.13 tag: Include/cpython/pystate.h,
Include/internal/pycore_interp.h, Include/internal/pycore_runtime.h,
Include/cpython/frameobject.h, Include/cpython/code.h.

Differences from 3.8/3.9: ``f_lasti`` counts 2-byte code units, not bytes, and moved to 96;
``co_linetable`` (at the old ``co_lnotab`` slot) uses the 3.10 format (Objects/lnotab_notes.txt
of v3.10); the thread state gained ``cframe`` (48), which carries no frame pointer yet, so the
top frame is still ``tstate->frame``.  Runtime and interpreter offsets are 3.9's.
"""

from spyrec.layouts.base import (AwaitOffsets, CodeOffsets, FrameOffsets, InterpreterOffsets, Layout,
                                 ObjectOffsets, RuntimeOffsets, StringOffsets, TaskOffsets,
                                 ThreadOffsets)

V3_10 = Layout(
    name="v3_10",
    runtime=RuntimeOffsets(
        interpreters_head=32,
        gil=352,  # ceval.gil; last_holder at 360, locked at 368
    ),
    interp=InterpreterOffsets(next=0, tstate_head=8, modules=856,
                              gc_collecting=816),  # gc at 616, collecting at +200
    thread=ThreadOffsets(
        prev=0, next=8, interp=16,
        frame=24,  # struct _frame *frame
        thread_id=176,
        native_thread_id=None, datastack_chunk=None, datastack_top=None,
        size=280,
        unique_id=256,  # uint64_t id
    ),
    frame=FrameOffsets(
        code=32,  # f_code
        previous=24,  # f_back
        instr=96,  # int f_lasti, in code units: byte offset = 2 * f_lasti
        owner=None,
        size=100,
        gen=88,  # PyObject *f_gen
        executing=108, executing_value=0,  # PyFrameState f_state, FRAME_EXECUTING
    ),
    code=CodeOffsets(
        co_firstlineno=40,
        co_filename=104,
        co_name=112,
        co_qualname=None,
        co_linetable=120,
        co_code_adaptive=None,
        co_flags=36,
        size=176,
        shape=((48, "Q"), (56, "Q"), (64, "Q"), (32, "i")),  # co_code, co_consts, co_names, co_stacksize
    ),
    strings=StringOffsets(ascii_data=48, compact_data=72),
    objects=ObjectOffsets(ht_cached_keys=872),
    gen_frame_pointer=16,  # PyGenObject.gi_frame
    # f_state FRAME_SUSPENDED -1, finished from FRAME_RETURNED 1; YIELD_FROM 72 after f_lasti;
    # the stack is f_valuestack[:f_stackdepth] (Include/cpython/frameobject.h 3.10)
    awaits=AwaitOffsets(frame_state=108, yield_from_opcode=72, co_code=48, stack_top=80,
                        valuestack=64, localsplus=352),  # after f_blockstack at 112
    task=TaskOffsets(task_coro=160, task_name=168),
    frame_kind="pyframe",
    thread_frame_kind="frame",
    instr_kind="lasti_units",
    linetable_kind="linetable310",
    gil_kind="runtime",
)
