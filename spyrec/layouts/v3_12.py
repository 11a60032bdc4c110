"""CPython 3.12: like 3.11, plus per-interpreter GIL and C-stack shim frames.

Numbers from gcc ``offsetof`` against the pyenv 3.12.1 headers, checked against DWARF and
by a live walk.  Mirrors the v3.12.1 tag: Include/cpython/pystate.h,
Include/internal/pycore_interp.h (``threads.head``, ``ceval.gil``, ``_gil``),
Include/internal/pycore_runtime.h, Include/internal/pycore_frame.h, Include/cpython/code.h,
Include/cpython/unicodeobject.h (the string headers shrank: 40 / 56 bytes).

Frame owners: THREAD 0, GENERATOR 1, FRAME_OBJECT 2, CSTACK 3.  Owner 3 is the entry shim
(code ``<interpreter trampoline>`` in ``<shim>``), one at the bottom of each thread and one at
each C->Python re-entry: skipped.  The GIL is reached through ``interp->ceval.gil``, which for
the main interpreter points at ``interp->_gil`` (1040; last_holder 1048, locked 1056).
"""

from spyrec.layouts.base import (AwaitOffsets, CFrameOffsets, ChunkOffsets, CodeOffsets, FrameOffsets,
                                 InterpreterOffsets, Layout, ObjectOffsets, RuntimeOffsets,
                                 StringOffsets, TaskOffsets, ThreadOffsets)

V3_12 = Layout(
    name="v3_12",
    runtime=RuntimeOffsets(interpreters_head=40, gil=None),
    interp=InterpreterOffsets(next=0, tstate_head=72, modules=944, ceval_gil=384, gil=1040,
                              gc_collecting=312),  # gc at 112, collecting at +200
    thread=ThreadOffsets(
        prev=0, next=8, interp=16,
        frame=56,  # _PyCFrame *cframe
        thread_id=136,
        native_thread_id=144,
        datastack_chunk=232, datastack_top=240,
        size=288,
    ),
    cframe=CFrameOffsets(current_frame=0),
    frame=FrameOffsets(
        code=0,  # PyCodeObject *f_code
        previous=8,
        instr=56,  # _Py_CODEUNIT *prev_instr
        owner=70,
        size=72,
    ),
    code=CodeOffsets(
        co_firstlineno=68,
        co_filename=112,
        co_name=120,
        co_qualname=128,
        co_linetable=136,
        co_code_adaptive=192,
        co_flags=48,  # after co_consts, co_names, co_exceptiontable
        size=200,
        frame_words=(76,),  # co_framesize
        co_version=92,
    ),
    strings=StringOffsets(ascii_data=40, compact_data=56),
    chunk=ChunkOffsets(),
    objects=ObjectOffsets(ht_cached_keys=880, dict_keys_kind="log2", dk_nentries=24, dk_indices=32,
                          long_kind="lv_tag", instance_dict="managed312"),
    gen_iframe=72,  # PyGenObject.gi_iframe
    task=TaskOffsets(task_coro=136, task_name=144),
    # gi_frame_state; FRAME_SUSPENDED -1; RESUME 151 and INSTRUMENTED_RESUME 240 (Include/opcode.h)
    awaits=AwaitOffsets(frame_state=67, suspended=-1, resume_opcodes=(151, 240)),
    frame_kind="iframe",
    thread_frame_kind="cframe",
    instr_kind="code_pointer",
    linetable_kind="locations311",
    gil_kind="interp",
    max_frame_owner=3,
    skip_owner_from=3,
    frame_has_ob_type=False,
)
