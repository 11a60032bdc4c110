"""Defining each string, frame and stack once: content -> id tables over a writer.

A writer (``SpyWriter``, or any sink with its ``define_*`` methods) gives every definition a
fresh id; this keeps the ids of what was defined, so equal content is defined once.  Past
``limit`` entries a table is forgotten and later definitions get fresh ids (the format allows
the same content under several ids): a recorder running for hours passes a limit to stay in
bounded memory, a tool rewriting one file passes none.
"""

from typing import Dict, Optional, Protocol, Sequence, Sized, Tuple


class Definitions(Protocol):
    """What an ``Interner`` defines through: each method returns the new definition's id."""

    def define_string(self, text: str) -> int: ...

    def define_frame(self, file: int, name: int, qualname: int, line: int,
                     column: int = -1, kind: int = 0, source: int = 0) -> int: ...

    def define_stack(self, frame_ids: Sequence[int]) -> int: ...


class Interner:
    """The ids of the strings, frames and stacks defined through ``writer``."""

    def __init__(self, writer: Definitions, limit: Optional[int] = None):
        self.writer = writer
        self.limit = limit
        self._strings: Dict[str, int] = {}
        self._frames: Dict[Tuple[str, str, str, int, int, int, str], int] = {}
        self._stacks: Dict[Tuple[int, ...], int] = {}

    def _full(self, table: Sized) -> bool:
        return self.limit is not None and len(table) >= self.limit

    def string_id(self, text: str) -> int:
        sid = self._strings.get(text)
        if sid is None:
            if self._full(self._strings):
                self._strings.clear()
            sid = self._strings[text] = self.writer.define_string(text)
        return sid

    def frame_id(self, filename: str, name: str, qualname: str, line: int, column: int = -1,
                 kind: int = 0, source: str = "") -> int:
        """The id of a frame; ``kind`` a ``FrameKind`` value (0: Python); ``source`` the source
        file of a native frame's line ("": none)."""
        key = (filename, name, qualname, line, column, kind, source)
        fid = self._frames.get(key)
        if fid is None:
            if self._full(self._frames):
                self._frames.clear()
            fid = self._frames[key] = self.writer.define_frame(
                self.string_id(filename), self.string_id(name), self.string_id(qualname), line,
                column, kind, 1 + self.string_id(source) if source else 0)
        return fid

    def stack_id(self, frame_ids: Tuple[int, ...]) -> int:
        """The id of a stack given as a tuple of frame ids, root (outermost) first."""
        sid = self._stacks.get(frame_ids)
        if sid is None:
            if self._full(self._stacks):
                self._stacks.clear()
            sid = self._stacks[frame_ids] = self.writer.define_stack(frame_ids)
        return sid
