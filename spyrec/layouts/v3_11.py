"""CPython 3.11: ``_PyInterpreterFrame`` in per-thread datastack chunks, location tables.

Numbers from gcc ``offsetof`` against the pyenv 3.11.7 headers, checked against DWARF and
by a live walk.  Debian's 3.11.2 (/usr/bin/python3.11) walks with the same numbers
(tests/test_walker.py runs both).  Mirrors the v3.11.7 tag: Include/cpython/pystate.h
(``_ts``, ``_PyCFrame``), Include/internal/pycore_interp.h, Include/internal/pycore_runtime.h,
Include/internal/pycore_frame.h (``_PyInterpreterFrame``, ``_PyStackChunk`` in
pycore_pystate.h / cpython/pystate.h), Include/cpython/code.h.

Frame owners (pycore_frame.h ``enum _frameowner``): THREAD 0, GENERATOR 1, FRAME_OBJECT 2;
3.11 has no C-stack shim frames.  ``prev_instr`` points at the code unit before the next
instruction: offset = prev_instr - (code + co_code_adaptive), -2 before the first.
"""

from spyrec.layouts.base import (AwaitOffsets, CFrameOffsets, ChunkOffsets, CodeOffsets, FrameOffsets,
                                 InterpreterOffsets, Layout, ObjectOffsets, RuntimeOffsets,
                                 StringOffsets, TaskOffsets, ThreadOffsets)

V3_11 = Layout(
    name="v3_11",
    runtime=RuntimeOffsets(
        interpreters_head=40,
        gil=360,  # ceval.gil; last_holder at 368, locked at 376
    ),
    interp=InterpreterOffsets(next=0, tstate_head=16, modules=888,
                              gc_collecting=848),  # gc at 648, collecting at +200
    thread=ThreadOffsets(
        prev=0, next=8, interp=16,
        frame=56,  # _PyCFrame *cframe (may point at root_cframe inside the tstate)
        thread_id=152,
        native_thread_id=160,
        datastack_chunk=296, datastack_top=304,
        size=360,
    ),
    cframe=CFrameOffsets(current_frame=8),
    frame=FrameOffsets(
        code=32,  # PyCodeObject *f_code
        previous=48,
        instr=56,  # _Py_CODEUNIT *prev_instr
        owner=69,  # char owner
        size=72,
        is_entry=68,  # bool is_entry
    ),
    code=CodeOffsets(
        co_firstlineno=72,
        co_filename=112,
        co_name=120,
        co_qualname=128,
        co_linetable=136,
        co_code_adaptive=184,
        co_flags=48,  # after co_consts, co_names, co_exceptiontable
        size=192,
        frame_words=(76, 68),  # co_nlocalsplus, co_stacksize
        frame_specials=9,
        shape=((16, "q"), (24, "Q"), (32, "Q")),  # ob_size, co_consts, co_names
    ),
    strings=StringOffsets(ascii_data=48, compact_data=72),
    chunk=ChunkOffsets(),
    objects=ObjectOffsets(ht_cached_keys=872, dict_keys_kind="log2", dk_nentries=24, dk_indices=32,
                          instance_dict="managed311"),
    gen_iframe=80,  # PyGenObject.gi_iframe
    task=TaskOffsets(task_coro=136, task_name=144),
    # gi_frame_state; FRAME_SUSPENDED -1; RESUME 151 and RESUME_QUICK 150 (Include/opcode.h)
    awaits=AwaitOffsets(frame_state=75, suspended=-1, resume_opcodes=(151, 150)),
    frame_kind="iframe",
    thread_frame_kind="cframe",
    instr_kind="code_pointer",
    linetable_kind="locations311",
    gil_kind="runtime",
    max_frame_owner=2,
    skip_owner_from=None,
    frame_has_ob_type=False,
)
