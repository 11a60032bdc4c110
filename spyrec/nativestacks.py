"""Native frames: a thread's C stack unwound from a copy of its registers and stack, named, and
interleaved with its Python frames.

A running thread's copy comes from the interrupt that also copied its Python frames
(spyrec.perfstacks); a thread asleep in the kernel holds still, so its stack pointer and
instruction (``/proc/PID/task/TID/syscall``) and the stack above it, read from outside, give
the same.  The unwinder follows each function's ``.eh_frame`` rules (spyrec.elfunwind), so
it needs no frame pointers; a thread read asleep has no frame pointer value to start from, so
a function whose rules need one (a build with frame pointers) has its frame record looked for
on the stack.

Each run of the interpreter's eval loop (``_PyEval_EvalFrameDefault``) in the native stack runs
one or more Python frames: one per run up to 3.10; from 3.11 on, every Python function called
from Python runs in its caller's run, and a run ends at an entry frame (``is_entry``, 3.11;
an entry frame owned by the C stack, 3.12+: Python/ceval.c).  The k-th run from the inside
takes the k-th group of Python frames from the inside; a stack whose runs and groups do not
pair up is left with its Python frames only (``NativeStacks.unmerged`` counts them).
"""

import bisect
import gc
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, TypeVar

from spyrec.elflines import debug_file
from spyrec.elfunwind import CFA_AT_RBP, RBP, RSP, ElfUnwind, unwind_info
from spyrec.errors import MemoryReadError, SpyError
from spyrec.nativelines import PENDING, NativeLines
from spyrec.perfstacks import STACK_BYTES, UserStack
from spyrec.process import MemoryMap, MemoryReader, proc_path, read_maps, target_file, target_view
from spyrec.symbols import ElfImage, load_elf

T = TypeVar("T")

#: The kernel's vDSO mapping, as /proc/PID/maps names it, and the most of it read.
VDSO = "[vdso]"
MAX_VDSO_BYTES = 1 << 20
#: Native frames followed in one stack.
MAX_NATIVE_FRAMES = 512
#: Bytes above the stack pointer searched for a frame record (see ``_frame_record``).
FRAME_SEARCH = 4096
#: Bytes above the stack pointer searched for the return address of a function without unwind
#: rules, or whose rules lead nowhere (see ``_past_leaf``): its saved registers and locals lie
#: below it.
LEAF_SEARCH = 1024
#: Bytes of a stack read above its copy at a time, and at most in all (``StackWords``).
GROW_BYTES = 32 * 1024
MAX_STACK_READ = 1024 * 1024
#: Native functions kept named.
NAMES_KEPT = 50_000
#: The functions whose frames run Python frames (Python/ceval.c, 3.8-3.15).
EVAL_FUNCTIONS = frozenset(("_PyEval_EvalFrameDefault",))
#: Seconds between two reads of the memory map for an address no mapping holds (a library
#: loaded since; a thread stack made since).
REMAP_AFTER = 0.1


class NativeFrame(NamedTuple):
    """A native function: the file it is in (as the target sees it) and its name; and, where
    the file has debug line information, the source file and line of the instruction (of the
    call, in a caller)."""

    file: str
    name: str
    source: str = ""
    line: int = 0
    #: (id of its module, address) while its unit's lines are not decoded
    #: (``NativeStacks.lines_now`` gives them once they are); () otherwise.
    pending: Tuple[int, ...] = ()


def awaits_lines(placed: Optional[Tuple[Tuple[int, Tuple[NativeFrame, ...]], ...]]) -> bool:
    """Whether native frames placed among a stack's Python frames (``NativeStacks.frames``)
    hold one whose unit's lines are not decoded yet (``NativeFrame.pending``)."""
    return placed is not None and any(frame.pending for _, frames in placed for frame in frames)


class _Module(NamedTuple):
    start: int
    end: int
    path: str
    unwind: Optional[ElfUnwind]
    delta: int  # add to an address to get the file's own address (its ``st_value`` scale)
    image: Optional[ElfImage]
    debug: Optional[ElfImage]  # its separate debug file (spyrec.elflines.debug_file)


def _module(pid: int, mapping: MemoryMap, mem: MemoryReader) -> _Module:
    unwind, delta, image, debug = None, 0, None, None
    path = target_view(pid, mapping.path)
    try:
        if mapping.path == VDSO:
            image, separate = ElfImage(VDSO, _read_vdso(mem, mapping)), None
        else:
            image = load_elf(target_file(pid, mapping))
            separate = debug_file(image.elf, proc_path(pid, "root"), path)
        if separate is not None:
            try:
                debug = load_elf(separate)
            except Exception:  # a debug file that does not parse: the library goes without
                debug = None
        for segment in image.elf.iter_segments():
            if segment["p_type"] != "PT_LOAD":
                continue
            lo = segment["p_offset"]
            if lo <= mapping.offset < lo + max(segment["p_filesz"], 1):
                delta = segment["p_vaddr"] - lo + mapping.offset - mapping.start
                unwind = unwind_info(image, debug)
                # read here, not by the line helper (see spyrec.elflines.line_table)
                for elf in (image, debug):
                    if elf is not None:
                        elf.dwarf()
                break
    except Exception:
        # a file that does not parse (the target's, maybe damaged): its functions are not
        # unwound (the unwind stops)
        unwind = None
    if unwind is None:
        image = debug = None
    return _Module(mapping.start, mapping.end, path, unwind, delta, image, debug)


def _read_vdso(mem: MemoryReader, mapping: MemoryMap) -> bytes:
    """The kernel's vDSO as the target maps it: an ELF image with no file behind it, where
    ``time.time()`` and ``time.perf_counter()`` read the clock (a few pages)."""
    if mapping.end - mapping.start > MAX_VDSO_BYTES:
        raise SpyError("a vDSO of %d bytes" % (mapping.end - mapping.start))
    return mem.read(mapping.start, mapping.end - mapping.start)


class AddressSpace:
    """The target's executable mappings and stacks, as of the last read of its memory map."""

    def __init__(self, pid: int, clock, mem: MemoryReader):
        self.pid = pid
        self._clock = clock
        self.mem = mem  # (the vDSO has no file: it is read from the target's memory)
        self._read_at = -REMAP_AFTER
        self._modules: Dict[Tuple[int, int, str], _Module] = {}
        self._starts: List[int] = []
        self._code: List[MemoryMap] = []
        self._all_starts: List[int] = []
        self._all: List[MemoryMap] = []
        self._remap()

    def _remap(self) -> bool:
        now = self._clock()
        if now - self._read_at < REMAP_AFTER:
            return False
        self._read_at = now
        try:
            maps = sorted(read_maps(self.pid), key=lambda m: m.start)
        except SpyError:  # the target ended: nothing maps any more
            maps = []
        self._all = maps
        self._all_starts = [m.start for m in maps]
        self._code = [m for m in maps if "x" in m.perms and (m.path.startswith("/")
                                                             or m.path == VDSO)]
        self._starts = [m.start for m in self._code]
        return True

    def module(self, address: int, remap: bool = True) -> Optional[_Module]:
        """The module that maps ``address``; ``remap``: read the memory map again (at most
        every ``REMAP_AFTER``) when none does."""
        for _ in range(2 if remap else 1):
            i = bisect.bisect_right(self._starts, address) - 1
            if i >= 0 and address < self._code[i].end:
                mapping = self._code[i]
                key = (mapping.start, mapping.end, mapping.path)
                found = self._modules.get(key)
                if found is None:
                    found = self._modules[key] = _module(self.pid, mapping, self.mem)
                return found
            if not self._remap():
                return None
        return None

    def load_all(self) -> None:
        """Read the unwind rules and symbols of every library mapped now: before sampling
        begins, not in the rounds that first meet each library (those would be lost, and
        lost in the code met first)."""
        for mapping in self._code:
            self.module(mapping.start, remap=False)

    def stack_end(self, sp: int) -> Optional[int]:
        """The end of the mapping that holds ``sp`` (a stack grows down, its callers above)."""
        for _ in range(2):
            i = bisect.bisect_right(self._all_starts, sp) - 1
            if i >= 0 and sp < self._all[i].end:
                return self._all[i].end
            if not self._remap():
                return None
        return None


class Unwound(NamedTuple):
    """One native frame as unwound: its module, the address in the file (of the call, for a
    caller), the start of its function (None: no unwind entry), and its stack frame: from the
    stack pointer to the canonical frame address (0: not known)."""

    module: _Module
    address: int
    start: Optional[int]
    sp: int
    cfa: int


class StackWords:
    """A thread's stack from ``base`` up, as 8-byte words: its copy, and above it, read from
    the target when an unwind needs them, the callers' frames the copy did not reach (a copy
    holds the top ``STACK_BYTES``; the frames above change only when the thread returns to
    them, and a word read there must still lead to code with unwind rules to be followed)."""

    def __init__(self, data: bytes, base: int, more=None):
        self.data = data
        self.base = base
        self._more = more  # (address, size) -> the target's bytes there (b"": none)

    def word(self, address: int) -> Optional[int]:
        at = address - self.base
        if at < 0:
            return None
        if at + 8 > len(self.data) and not self._grow(at + 8):
            return None
        return int.from_bytes(self.data[at:at + 8], "little")

    def _grow(self, need: int) -> bool:
        if self._more is None or need > MAX_STACK_READ:
            return False
        extra = self._more(self.base + len(self.data),
                           min(max(need - len(self.data), GROW_BYTES), MAX_STACK_READ - len(self.data)))
        if not extra:
            self._more = None
            return False
        self.data += extra
        return len(self.data) >= need


def unwind(space: AddressSpace, regs: UserStack, more=None) -> Tuple[List[Unwound], bool]:
    """The native frames of ``regs``, innermost first, and whether the unwind reached the
    outermost frame.  ``more(address, size)``: the target's stack bytes above the copy."""
    stack = StackWords(regs.stack, regs.sp, more)
    return _unwind_from(space, regs, stack, regs.sp, regs.bp, regs.ip, True, False)


def _unwind_from(space: AddressSpace, regs: UserStack, stack: "StackWords", sp: int,
                 bp: Optional[int], pc: int, first: bool,
                 scanned: bool) -> Tuple[List[Unwound], bool]:
    frames: List[Unwound] = []
    while len(frames) < MAX_NATIVE_FRAMES:
        module = space.module(pc)
        if module is None or module.unwind is None:
            if frames and not scanned and frames[-1].module.image is not None:
                # the last function's rules led nowhere (assembly whose rules do not cover
                # the instruction interrupted): its return address looked for instead
                return _past_leaf(space, regs, stack, frames[-1].sp, bp, frames)
            return frames, False
        # a caller's address is a return address, after its call: look at the call itself
        address = pc + module.delta - (0 if first else 1)
        start, row = module.unwind.table.row(address)
        cfa: Optional[int] = 0
        if row is None:
            pass
        elif row.cfa_reg == RSP:
            cfa = sp + row.cfa_offset
        elif row.cfa_reg in (RBP, CFA_AT_RBP):
            if bp is None:  # a thread read asleep: its frame pointer is not known
                bp = _frame_record(space, regs.stack, regs.sp, sp)
            if bp is not None and row.cfa_reg == RBP:
                cfa = bp + row.cfa_offset
            elif bp is not None:
                cfa = stack.word(bp + row.cfa_offset)
        elif row.cfa_reg == -1 and first:
            cfa = sp + 8  # a PLT stub: the only expressions at an instruction boundary
        frames.append(Unwound(module, address, start, sp, cfa or 0))
        if row is None and not scanned:
            # hand-written assembly without unwind rules (OpenBLAS's kernels and drivers)
            return _past_leaf(space, regs, stack, sp, bp, frames)
        if row is None or not cfa:
            return frames, False
        if row.ra_at is None:
            return frames, True  # the thread's first function (_start, clone3)
        found = stack.word(cfa + row.ra_at)
        if found is None or cfa <= sp:
            return frames, False
        pc = found
        if row.rbp_at is not None and cfa + row.rbp_at >= sp:
            # (below the stack pointer: an epilogue has popped it back already, and compilers
            # do not always say so in its rows)
            bp = stack.word(cfa + row.rbp_at)
            if bp is None:
                return frames, False
        elif row.rbp_at_bp is not None and bp is not None:  # saved where the frame pointer says
            bp = stack.word(bp + row.rbp_at_bp)
            if bp is None:
                return frames, False
        sp = cfa
        first = False
        if not pc:
            return frames, True
    return frames, False


def _past_leaf(space: AddressSpace, regs: UserStack, stack: "StackWords", sp: int,
               bp: Optional[int], frames: List[Unwound]) -> Tuple[List[Unwound], bool]:
    """``frames`` (unwound so far, the last a function without unwind rules whose frame
    starts at ``sp``) with that function's callers, unwound from its return address: the
    first word above ``sp`` that follows a call instruction in code with unwind rules, taken
    only if the unwind from there reaches the thread's first function (a word that only looks
    like one does not); none where no word does.  Once per unwind: the search is not
    nested."""
    for at in range(sp, sp + LEAF_SEARCH, 8):
        ra = stack.word(at)
        if ra is None:
            break
        module = space.module(ra, remap=False)
        if module is None or module.unwind is None or module.image is None:
            continue
        address = ra + module.delta
        if module.unwind.table.row(address - 1)[1] is None or not follows_call(module.image, address):
            continue
        rest, complete = _unwind_from(space, regs, stack, at + 8, bp, ra, False, True)
        if complete:
            return frames + rest[:MAX_NATIVE_FRAMES - len(frames)], True
    return frames, False


def follows_call(image: ElfImage, address: int) -> bool:
    """Whether the instruction before ``address`` (in the file) is an x86-64 call: ``E8 rel32``,
    or ``FF /2`` through a register or memory (2, 3, 4, 6 or 7 bytes)."""
    code = image.code_before(address, 7)
    if len(code) < 7:
        return False
    if code[2] == 0xE8:
        return True
    for length in (2, 3, 4, 6, 7):
        at = 7 - length
        if code[at] == 0xFF and (code[at + 1] >> 3) & 7 == 2:
            return True
    return False


def _frame_record(space: AddressSpace, stack: bytes, base: int, sp: int) -> Optional[int]:
    """Where the frame pointer of a function that keeps one (its CFA is ``rbp + 16``) points,
    when the registers do not say (a thread read asleep: only its stack and instruction
    pointers are known): the first pair above ``sp`` that reads as a frame record, a saved
    frame pointer further up the stack (or 0, outermost) and a return address into code
    with unwind rules."""
    top = base + len(stack) - 16
    for at in range(sp - base, min(sp - base + FRAME_SEARCH, top - base + 1), 8):
        saved = int.from_bytes(stack[at:at + 8], "little")
        if saved and not base + at < saved <= top:
            continue
        ra = int.from_bytes(stack[at + 8:at + 16], "little")
        module = space.module(ra, remap=False)
        if module is None or module.unwind is None:
            continue
        if module.unwind.table.row(ra + module.delta - 1)[1] is not None:
            return base + at
    return None


def eval_frames(runs: Sequence[Tuple[int, int]], found: Sequence[Unwound],
                named: Sequence[int]) -> List[int]:
    """Which of the ``found`` native frames ran each of ``runs``, innermost first, as far as
    they are found.  From 3.12 on a run's entry frame lies in its eval loop's stack frame,
    which says which native frame it is even where the eval loop has no name (a stripped
    binary, code split into hot and cold parts); before, the native frames ``named`` as the
    eval loop; one more of those than there are runs is an eval loop just entered, its frame
    not pushed yet (or leaving, its frame popped): the innermost, which stays a native frame,
    as it does from 3.12 on."""
    if not runs or not all(entry for _, entry in runs):
        return list(named[1:] if len(named) == len(runs) + 1 else named)
    evals: List[int] = []
    i = 0
    for _, entry in runs:
        while i < len(found) and not found[i].sp <= entry < found[i].cfa:
            i += 1
        if i == len(found):
            break
        evals.append(i)
        i += 1
    return evals


def place(runs: Sequence[int], natives: Sequence[T], evals: Sequence[int],
          complete: bool) -> Optional[Tuple[Tuple[int, Tuple[T, ...]], ...]]:
    """Where the native frames go among the Python frames: ((p, frames), ...), each run of
    native frames (innermost first) put just inside Python frame ``p`` (innermost first; ``p``
    the number of Python frames: outside them all).  ``runs``: Python frames per run of the
    eval loop, innermost first; ``evals``: where those runs are in ``natives``.  None when they
    do not pair up (a stack unwound whole must have a run for each group)."""
    if len(evals) > len(runs) or complete and len(evals) != len(runs):
        return None
    placed = []
    p = previous = 0
    for k, at in enumerate(evals):
        placed.append((p, tuple(natives[previous:at])))
        p += runs[k]
        previous = at + 1
    placed.append((p, tuple(natives[previous:])))
    return tuple(placed)


class NativeStacks:
    """The native frames of one target's samples."""

    def __init__(self, pid: int, mem: MemoryReader, clock):
        self.space = AddressSpace(pid, clock, mem)
        self.mem = mem
        self._names: Dict[Tuple[int, int], Tuple[NativeFrame, bool]] = {}
        self.space.load_all()
        gc.freeze()  # (the libraries' tables stay: see spyrec.nativelines)
        self.lines = NativeLines()
        self._at: Dict[Tuple[int, int], Tuple[NativeFrame, ...]] = {}
        #: id -> module, of the modules of frames given out ``pending``
        self._waiting: Dict[int, _Module] = {}
        #: Samples whose native frames could not be put among their Python frames.
        self.unmerged = 0
        #: Samples given native frames.
        self.merged = 0

    def asleep(self, tid: int, sp: int, ip: int, still_there) -> Optional[UserStack]:
        """The registers and stack of a thread asleep in the kernel at ``sp``, ``ip``; None
        unless ``still_there()`` gives them again once the stack is read (a thread woken
        meanwhile may have written over it)."""
        stack = self._stack_bytes(sp, sp, STACK_BYTES)
        if not stack:
            return None
        if still_there() != (sp, ip):
            return None
        return UserStack(tid, 0, ip, sp, None, stack)

    def frames(self, regs: Optional[UserStack], runs: Sequence[Tuple[int, int]], count: int
               ) -> Optional[Tuple[Tuple[int, Tuple[NativeFrame, ...]], ...]]:
        """The native frames of ``regs`` placed among ``count`` Python frames that ran in
        ``runs`` (see ``place``), or None (and counted in ``unmerged``)."""
        placed = None
        if regs is not None and sum(c for c, _ in runs) == count:
            found, complete = unwind(self.space, regs, self._above(regs.sp))
            natives: List[Tuple[NativeFrame, ...]] = []  # each found frame's, innermost first
            named: List[int] = []
            for frame in found:
                native, is_eval = self._name(frame.module, frame.address, frame.start)
                if is_eval:
                    named.append(len(natives))
                    natives.append((native,))
                else:  # (an eval loop's frame is replaced by its Python frames: no line needed)
                    natives.append(self._with_lines(native, frame.module, frame.address))
            evals = eval_frames(runs, found, named)
            counts = [c for c, _ in runs]
            while len(counts) > len(evals) and not counts[-1]:
                counts.pop()  # no frames, no run found (3.15's base frame ends every chain)
            grouped = place(counts, natives, evals, complete)
            if grouped is not None:
                placed = tuple((p, tuple(native for frames in group for native in frames))
                               for p, group in grouped)
        if placed is None:
            self.unmerged += 1
        else:
            self.merged += 1
        return placed

    def lines_now(self, frame: NativeFrame) -> Optional[Tuple[NativeFrame, ...]]:
        """A frame given out ``pending`` as it is now that its unit's lines are decoded (with
        the frames of the functions inlined there, innermost first), or None while they are
        not."""
        module = self._waiting.get(frame.pending[0]) if frame.pending else None
        if module is None:
            return None
        found = self._with_lines(frame._replace(pending=()), module, frame.pending[1])
        return None if found[0].pending else found

    def _above(self, sp: int):
        """Reads of the target's stack above a copy, within the mapping that holds ``sp``."""
        return lambda address, size: self._stack_bytes(sp, address, size)

    def _stack_bytes(self, sp: int, address: int, size: int) -> bytes:
        """Up to ``size`` bytes of the target's stack from ``address``, within the mapping that
        holds ``sp``; b"" where they cannot be read."""
        end = self.space.stack_end(sp)
        if end is None or address >= end:
            return b""
        try:
            return self.mem.read(address, min(size, end - address))
        except MemoryReadError:
            return b""

    def _name(self, module: _Module, address: int, start: Optional[int]
              ) -> Tuple[NativeFrame, bool]:
        key = (id(module), start if start is not None else address)
        known = self._names.get(key)
        if known is None:
            name = None
            if module.unwind is not None:
                name = module.unwind.symbols.name(address, start)
            if name is None:
                name = "0x%x" % (start if start is not None else address)
            if len(self._names) >= NAMES_KEPT:
                self._names.clear()
            known = self._names[key] = (NativeFrame(module.path, name), name in EVAL_FUNCTIONS)
        return known

    def _with_lines(self, native: NativeFrame, module: _Module, address: int
                    ) -> Tuple[NativeFrame, ...]:
        """``native`` with the source file and line of ``address``, where its file (or its
        separate debug file) has a line table (and, unless ``lines.wait``, it is decoded);
        preceded by a frame for each function inlined there, innermost first."""
        if module.image is None:
            return (native,)
        key = (id(module), address)
        found = self._at.get(key)
        if found is None:
            places = self.lines.frames(id(module), module.image, module.debug, address)
            if places is PENDING:
                self._waiting[id(module)] = module
                return (native._replace(pending=(id(module), address)),)
            found = (native,) if places is None else tuple(
                native._replace(name=name or native.name, source=source, line=line)
                for name, source, line in places)
            if len(self._at) >= NAMES_KEPT:
                self._at.clear()
            self._at[key] = found
        return found
