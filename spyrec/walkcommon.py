"""Bounds and helpers shared by the thread walk (walker.py), the two frame walks (pyframes.py,
chunkwalk.py) and the task walk (taskwalk.py), and the stack a walk gives: one place for each."""

import struct
from typing import Dict, List, NamedTuple, Optional, Tuple

from spyrec.errors import MemoryReadError

#: Frames a stack may have: deep recursions (``sys.setrecursionlimit``) are recorded whole.
MAX_DEPTH = 1 << 16
#: Past this many frames a walk also checks that it is not going round a loop of stale links.
DEEP = 2048
#: Thread states followed in one interpreter, and threads the per-thread tables keep.
MAX_THREADS = 4096

#: Interpreters followed in the runtime's list.
MAX_INTERPRETERS = 256

#: What a read of a moving target can raise: a torn walk, never a crash.
READ_ERRORS = (MemoryReadError, struct.error, OverflowError, ValueError)
U64 = struct.Struct("<Q")

#: {address: bytes} of frames (or chunks) copied with a thread state, when there are any.
Copies = Optional[Dict[int, bytes]]
#: A frame walk's (code addresses, instruction offsets, torn), innermost first.
Walk = Tuple[List[int], List[int], bool]


def copies_by_address(ranges: List[Tuple[int, int]], copies: List[Optional[bytes]]) -> Copies:
    """{address: copy} of the ranges that could be read, or None when there are none."""
    found = {addr: data for (addr, _), data in zip(ranges, copies) if data is not None}
    return found or None


def interpreter_list(mem, layout, runtime: int) -> List[int]:
    """Every interpreter state's address, newest first: each new one is put at the head of the
    runtime's list (Python/pystate.c), so the main interpreter is last.  Raises what a read
    raises."""
    interps: List[int] = []
    interp = U64.unpack(mem.read(runtime + layout.runtime.interpreters_head, 8))[0]
    while interp and len(interps) < MAX_INTERPRETERS:
        interps.append(interp)
        interp = U64.unpack(mem.read(interp + layout.interp.next, 8))[0]
    return interps


class ThreadStack(NamedTuple):
    """One Python thread state at one instant (created on the hot path: a plain tuple)."""

    native_tid: int  # kernel TID in our (the host's) PID namespace; 0 if unknown
    python_thread_id: int  # PyThreadState.thread_id (= threading.get_ident() in the target)
    frames: tuple  # ((code_key, instr_offset), ...), innermost first
    holds_gil: bool
    torn: bool  # the walk hit an inconsistency; frames holds what was read
    #: When the thread state was copied for the walk that gave ``frames`` (monotonic ns; 0
    #: for a stack kept from an earlier walk, which holds at any time since).
    read_ns: int = 0
    #: The interpreter's garbage collector was running, in this thread (the GIL's holder).
    in_gc: bool = False
    #: The asyncio task the thread's event loop was stepping (its address; 0: none, or not
    #: known: before asyncio was found, see spyrec.taskwalk).
    task: int = 0
    #: Copied at an interrupt with the GIL and collector state of that moment (see
    #: spyrec.stackcapture), not walked.
    copied: bool = False
    #: (Python frames, address of its entry frame or 0) of each run of the eval loop,
    #: innermost first, where known (a copied stack, for native frames: see
    #: spyrec.nativestacks).
    runs: tuple = ()
    #: Every frame's code object was verified as it was walked (see CodeCache.replacing):
    #: the keys are of that moment, not to be verified again when the stack is named.
    verified: bool = False
    #: The name of the Thread its first frame (``Thread._bootstrap(self)``) runs for, read
    #: right after the walk for a thread not named yet (None: not read, or not found; see
    #: ``StackWalker.after_walk``).
    name: Optional[str] = None
    #: Its round's walk tore and ``frames`` come from a walk done again, later (read_ns).
    reread: bool = False
