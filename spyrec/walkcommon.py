"""Bounds and helpers shared by the thread walk (walker.py) and the two frame walks
(pyframes.py, chunkwalk.py): one place for each."""

import struct
from typing import Dict, List, Optional, Tuple

from spyrec.errors import MemoryReadError

#: Frames a stack may have: deep recursions (``sys.setrecursionlimit``) are recorded whole.
MAX_DEPTH = 1 << 16
#: Past this many frames a walk also checks that it is not going round a loop of stale links.
DEEP = 2048
#: Thread states followed in one interpreter, and threads the per-thread tables keep.
MAX_THREADS = 4096

#: What a read of a moving target can raise: a torn walk, never a crash.
READ_ERRORS = (MemoryReadError, struct.error, OverflowError, ValueError)
U64 = struct.Struct("<Q")

#: {address: bytes} of frames (or chunks) copied with a thread state, when there are any.
Copies = Optional[Dict[int, bytes]]
#: A frame walk's (code addresses, instruction offsets, torn), innermost first.
Walk = Tuple[List[int], List[int], bool]
