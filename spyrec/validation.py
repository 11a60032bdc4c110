"""Accepting a layout only once the target reads back through it: an interpreter found at the
wrong address, or a version read with the wrong field list, fails here with one line instead
of producing wrong stacks."""

import struct

from spyrec.errors import MemoryReadError, NotPython, TargetNotFound, UnsupportedPython
from spyrec.process import thread_ids

_U64 = struct.Struct("<Q")


def check_interpreter(process) -> None:
    """Read the interpreter back: interpreters.head, its first thread state's interp link."""
    lay = process.layout
    try:
        interp = _U64.unpack(process.mem.read(
            process.runtime_address + lay.runtime.interpreters_head, 8))[0]
        if not interp:
            # Right after exec (launch mode) or during exit: nothing to sample, and on
            # 3.8-3.10 the version may not be knowable yet.  NotPython lets a launcher
            # retry until the interpreter is up.
            raise NotPython("process %d: its Python interpreter is not initialised (yet)"
                            % process.pid)
        tstate = _U64.unpack(process.mem.read(interp + lay.interp.tstate_head, 8))[0]
        if tstate:
            back = _U64.unpack(process.mem.read(tstate + lay.thread.interp, 8))[0]
            if back != interp:
                raise MemoryReadError("tstate->interp mismatch")
    except MemoryReadError as exc:
        if not process.alive():
            raise TargetNotFound("process %d exited" % process.pid) from None
        raise UnsupportedPython("Python %s in process %d does not match the %s layout (%s)"
                                % (process.version_string, process.pid, lay.name, exc)) from None


def check_guessed_layout(process) -> None:
    """A minor newer than spyrec knows, read with the newest field list (its blob passed
    every static check): accept it only if a live walk checks out too.

    Every thread state must link back to its interpreter and walk without a torn read; its
    kernel TID must be one of the process's threads, the main thread (TID = PID) among
    them; and the frames must be code objects whose file and name decode, with at least one
    line number among them.  Fields
    the blob does not describe (owner values, tag bits, the line-table format) would break
    one of these.  Refuses with UnsupportedPython naming the version and the failed check.
    """
    def refuse(problem: str) -> None:
        if not process.alive():
            raise TargetNotFound("process %d exited" % process.pid)
        raise UnsupportedPython(
            "Python %s is newer than spyrec knows, and walking it with the %d.%d layout "
            "failed (%s): spyrec needs a %d.%d entry in spyrec/layouts/debug_offsets.py"
            % ((process.version_string,) + process.layout.guessed_from + (problem,)
               + process.version[:2]))

    stacks = process.walker.sample()
    if not stacks:
        refuse("no thread state found")
    tids = set(thread_ids(process.pid))
    frames = 0
    for stack in stacks:
        if stack.torn:
            refuse("a torn walk of thread %#x" % stack.python_thread_id)
        if stack.native_tid not in tids:
            refuse("thread %#x has TID %d, not one of the process's"
                   % (stack.python_thread_id, stack.native_tid))
        for key, offset in stack.frames:
            try:
                info = process.codes.describe(key, offset)
            except MemoryReadError as exc:
                refuse("a frame does not decode: %s" % exc)
            if not info.filename or not info.name or info.line < 0:
                refuse("a frame decodes to %r" % (info,))
            frames += info.line > 0
    if process.pid not in {stack.native_tid for stack in stacks}:
        refuse("no thread state of the main thread")
    if not frames:
        refuse("no Python frame with a line number found")
