"""The fields of each record kind, and a decoder that checks them while it reads.

A payload is decoded by walking its msgpack with a streaming unpacker rather than unpacking it
whole: a list's length is read from its header and charged to the ``ReadBudget`` before its
elements are built, keys this reader does not know are skipped without being built, and every
known field is checked against its type and range here, so the rest of the reader only sees
values the spec allows (formats/spy.md, "Field rules").
"""

import io
import struct

import msgpack

from spyformat import limits
from spyformat.errors import CorruptRecording
from spyformat.limits import MAX_MAP_KEYS, MAX_STACK_DEPTH, MAX_TIME_NS, MAX_WALL_NS, UNKNOWN_SLACK_BYTES

U32 = 1 << 32
U64 = 1 << 64
I32 = 1 << 31
#: A frame's line is below this (and not negative); its column too (or -1).
LINE_LIMIT = I32
I64 = 1 << 63


def bound(value):
    """A range bound as people read it: 2^60 rather than its 19 digits."""
    power = abs(value).bit_length() - 1
    if power > 16 and abs(value) == 1 << power:
        return "%s2^%d" % ("-" if value < 0 else "", power)
    return "%d" % value


class Int:
    def __init__(self, low, high):
        self.low, self.high = low, high         # high is exclusive

    def describe(self):
        return "an integer in [%s, %s)" % (bound(self.low), bound(self.high))


class Str:
    def describe(self):
        return "a string"


class StrOrNil(Str):
    def describe(self):
        return "a string or nil"


class IntList:
    """A list of integers, all in [low, high), of exactly ``length`` items when given."""

    def __init__(self, low, high, length=None):
        self.low, self.high, self.length = low, high, length

    def describe(self):
        return "a list of integers in [%s, %s)" % (bound(self.low), bound(self.high))


class StrList:
    def describe(self):
        return "a list of strings"


TIME = Int(0, MAX_TIME_NS)
COUNT = Int(0, I64)
PID = Int(0, U32)

#: The file, name and qualified name of the frame that marks a sample taken while the target's
#: garbage collector ran: innermost in the sample's stack (formats/spy.md, "FRAMES").
GC_FRAME = "<GC>"
#: The file, name and qualified name of the frame that stands for a code object a stack was
#: copied running and that was freed before it could be read (formats/spy.md, "FRAMES").
FREED_FRAME = "<freed code>"


class FrameKind:
    """Values of the FRAMES ``kind`` column (1.2): what ran there."""

    PYTHON = 0    # a line of a code object
    NATIVE = 1    # a function of the interpreter, an extension or a library
    KERNEL = 2    # a kernel function a thread was blocked in
    LIMIT = 3     # the values are below this


#: The file of every KERNEL frame (its name and qualified name are the kernel function's).
KERNEL_FILE = "[kernel]"
#: The file of the frame that says which asyncio task a sample's thread was running: outermost
#: in the stack, its name and qualified name the task's name (formats/spy.md, "FRAMES").
TASK_FILE = "<task>"

#: Per kind name: field -> type.  Unknown keys are skipped; a known key of the wrong type is
#: corrupt; nil stands for an absent field (except a THREAD ``name``, where it says the name is
#: unknown).  ``REQUIRED`` lists the keys a record must have.
FIELDS = {
    "HEADER": {"format": IntList(0, 256, length=2), "recorder": Str(), "start_wall_ns": Int(0, MAX_WALL_NS),
               "start_mono_ns": Int(0, I64), "interval_ns": Int(1, MAX_TIME_NS), "host": Str(), "pid": PID,
               "argv": StrList(), "cwd": Str(), "python_version": Str(), "python_executable": Str(),
               "codec": Str(), "mode": Str()},
    "STRINGS": {"first": Int(0, I64), "values": StrList()},
    "FRAMES": {"first": Int(0, I64), "file": IntList(0, I64), "name": IntList(0, I64),
               "qualname": IntList(0, I64), "line": IntList(0, LINE_LIMIT), "column": IntList(-1, LINE_LIMIT),
               "kind": IntList(0, FrameKind.LIMIT), "source": IntList(0, I64)},
    "STACKS": {"first": Int(0, I64), "lengths": IntList(0, MAX_STACK_DEPTH + 1), "frames": IntList(0, I64)},
    "PROCESS": {"pid": PID, "argv": StrList(), "python_version": Str(), "executable": Str(), "cwd": Str(),
                "start_ns": TIME, "end_ns": TIME, "exit_code": Int(-I32, I32), "ppid": PID,
                "skipped": Str()},
    "THREAD": {"pid": PID, "tid": PID, "py_thread_id": Int(0, U64), "name": StrOrNil(),
               "start_ns": TIME, "end_ns": TIME},
    "SAMPLES": {"count": Int(0, I64), "columns": None},     # columns: see _columns
    "TRAILER": {"end_ns": TIME, "duration_ns": TIME, "ticks": COUNT, "samples": COUNT, "errors": COUNT,
                "late": COUNT, "sampling_cost_ns": IntList(0, I64, length=3), "stop_reason": Str(),
                "walked": COUNT, "reread": COUNT},
}
REQUIRED = {"HEADER": ("format",), "STRINGS": ("first", "values"),
            "FRAMES": ("first", "file", "name", "qualname", "line", "column"),
            "STACKS": ("first", "lengths", "frames"), "PROCESS": ("pid",), "THREAD": ("pid", "tid"),
            "SAMPLES": ("count", "columns"), "TRAILER": ()}

#: What holding one element of a list field costs (limits), by kind and field.
_ELEMENT_COST = {("STRINGS", "values"): limits.STRING_COST,
                 ("STACKS", "lengths"): limits.STACK_COST,
                 ("STACKS", "frames"): limits.STACK_ENTRY_COST}
_FRAME_FIELDS = 6

# msgpack type bytes (https://github.com/msgpack/msgpack/blob/master/spec.md)
_ARRAY16, _ARRAY32, _MAP16, _MAP32 = 0xDC, 0xDD, 0xDE, 0xDF
_STR_BYTES = frozenset(range(0xA0, 0xC0)) | {0xD9, 0xDA, 0xDB}
_INT_BYTES = frozenset(range(0x00, 0x80)) | frozenset(range(0xE0, 0x100)) | frozenset(range(0xCC, 0xD4))
_NIL = 0xC0
_EXT_BYTES = frozenset((0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8))


class Walk:
    """A cursor over one payload's msgpack bytes (``raw``) that builds only what it is asked."""

    def __init__(self, raw, offset, budget, where):
        self.raw = raw
        self.offset = offset
        self.budget = budget
        self.where = where
        self.unpacker = msgpack.Unpacker(io.BytesIO(raw), raw=False, strict_map_key=True,
                                         ext_hook=_reject_ext, max_buffer_size=max(len(raw), 1 << 16),
                                         max_str_len=len(raw), max_bin_len=len(raw),
                                         max_array_len=len(raw), max_map_len=len(raw), max_ext_len=0)

    def fail(self, reason):
        raise CorruptRecording("%s %s" % (self.where, reason), self.offset)

    def peek(self):
        position = self.unpacker.tell()
        if position >= len(self.raw):
            self.fail("ends early")
        if self.raw[position] in _EXT_BYTES:
            self.fail("holds a msgpack extension type, which a recording may not")
        return self.raw[position]

    def step(self, action):
        try:
            return action()
        except CorruptRecording:
            raise
        except Exception as exc:        # msgpack raises several unrelated types for bad data
            self.fail("is not valid msgpack (%s)" % type(exc).__name__)

    def container(self, kind):
        """The element count of the array or map at the cursor, read from its header only."""
        first = self.peek()
        position = self.unpacker.tell()
        if kind == "array":
            if 0x90 <= first <= 0x9F:
                return first & 0x0F
            fmt = {_ARRAY16: ">H", _ARRAY32: ">I"}.get(first)
        else:
            if 0x80 <= first <= 0x8F:
                return first & 0x0F
            fmt = {_MAP16: ">H", _MAP32: ">I"}.get(first)
        if fmt is None:
            return None
        if position + 1 + struct.calcsize(fmt) > len(self.raw):
            self.fail("ends early")
        return struct.unpack_from(fmt, self.raw, position + 1)[0]

    def skip(self):
        self.step(self.unpacker.skip)

    def scalar(self):
        """The value at the cursor, or ``_CONTAINER`` for an array or map (skipped unbuilt)."""
        if self.container("array") is not None or self.container("map") is not None:
            self.skip()
            return _CONTAINER
        return self.step(self.unpacker.unpack)

    def map_keys(self, what):
        count = self.container("map")
        if count is None:
            self.fail("%s is not a map" % what)
        if count > MAX_MAP_KEYS:
            self.fail("%s has %d keys (at most %d)" % (what, count, MAX_MAP_KEYS))
        self.step(self.unpacker.read_map_header)
        for _ in range(count):
            if self.peek() not in _STR_BYTES:
                self.fail("%s has a key that is not a string" % what)
            yield self.step(self.unpacker.unpack)

    def int_list(self, field, spec, cost):
        """A list of integers, built in one unpack once its header and byte span are checked:
        an integer takes at most 9 bytes, so a longer span holds something else."""
        count = self.container("array")
        if count is None:
            self.fail("%s is not a list" % field)
        if spec.length is not None and count != spec.length:
            self.fail("%s has %d items, not %d" % (field, count, spec.length))
        self.budget.charge(count * cost, "%s %s of %d items" % (self.where, field, count), self.offset)
        start = self.unpacker.tell()
        self.skip()
        end = self.unpacker.tell()
        if end - start > 5 + 9 * count:
            self.fail("%s holds something other than integers" % field)
        try:
            values = msgpack.unpackb(memoryview(self.raw)[start:end], max_array_len=count,
                                     max_map_len=count, max_str_len=0, max_bin_len=0, max_ext_len=0)
        except Exception as exc:
            self.fail("%s is not valid msgpack (%s)" % (field, type(exc).__name__))
        for value in values:
            if type(value) is not int:
                self.fail("%s holds a %s, not an integer" % (field, type(value).__name__))
        if values and not (spec.low <= min(values) and max(values) < spec.high):
            self.fail("%s holds a value outside [%s, %s)" % (field, bound(spec.low), bound(spec.high)))
        return values

    def str_list(self, field, cost):
        count = self.container("array")
        if count is None:
            self.fail("%s is not a list" % field)
        self.budget.charge(count * cost, "%s %s of %d strings" % (self.where, field, count), self.offset)
        self.step(self.unpacker.read_array_header)
        values = []
        for _ in range(count):
            if self.peek() not in _STR_BYTES:
                self.fail("%s holds something other than strings" % field)
            value = self.step(self.unpacker.unpack)
            self.budget.charge(len(value), "%s %s" % (self.where, field), self.offset)
            values.append(value)
        return values


_CONTAINER = object()


def _reject_ext(code, data):
    raise CorruptRecording("msgpack extension type %d is not allowed in a recording" % code)


def decode_record(name, raw, offset, budget):
    """Decode the payload of a chunk of kind ``name`` into a dict of checked known fields."""
    walk = Walk(raw, offset, budget, name)
    fields = FIELDS[name]
    record = {}
    unknown = 0
    for key in walk.map_keys("payload"):
        spec = fields.get(key, False)
        if spec is False:
            start = walk.unpacker.tell()
            walk.skip()                  # a key of a later minor version
            unknown += walk.unpacker.tell() - start
            continue
        if key in record:
            walk.fail("has the key %r twice" % key)
        if walk.peek() == _NIL and not isinstance(spec, StrOrNil):
            walk.skip()                  # nil stands for an absent field
            continue
        if spec is None:
            record[key] = _columns(walk)
        elif isinstance(spec, IntList):
            default = limits.FRAME_COST // _FRAME_FIELDS if name == "FRAMES" else 8
            cost = _ELEMENT_COST.get((name, key), default)
            record[key] = walk.int_list("%r" % key, spec, cost)
        elif isinstance(spec, StrList):
            record[key] = walk.str_list("%r" % key, _ELEMENT_COST.get((name, key), limits.STRING_COST))
        else:
            is_int = isinstance(spec, Int)
            first = walk.peek()
            if is_int and first not in _INT_BYTES or not is_int and not (
                    first in _STR_BYTES or first == _NIL and isinstance(spec, StrOrNil)):
                walk.fail("%r is not %s" % (key, spec.describe()))
            value = walk.step(walk.unpacker.unpack)
            if is_int and not spec.low <= value < spec.high:
                walk.fail("%r is %d, not %s" % (key, value, spec.describe()))
            record[key] = value
    if walk.unpacker.tell() != len(raw):
        walk.fail("has bytes after its map")
    if unknown > len(raw) - unknown + UNKNOWN_SLACK_BYTES:
        walk.fail("holds %d bytes under keys this reader does not know, more than its known "
                  "fields (%d bytes) allow" % (unknown, len(raw) - unknown))
    for key in REQUIRED[name]:
        if key not in record:
            walk.fail("lacks the %r field" % key)
    return record


def _columns(walk):
    """SAMPLES ``columns``: name -> [dtype, transforms, bytes], built without lists of values."""
    columns = {}
    for name in walk.map_keys("'columns'"):
        if name in columns:
            walk.fail("has the column %r twice" % name)
        if walk.container("array") != 3:
            walk.fail("column %r is not a [dtype, transforms, bytes] triple" % name)
        walk.step(walk.unpacker.read_array_header)
        dtype = walk.scalar()
        transforms = walk.scalar()
        if walk.peek() not in (0xC4, 0xC5, 0xC6):
            walk.fail("column %r holds no bytes" % name)
        data = walk.step(walk.unpacker.unpack)
        if type(dtype) is not str or type(transforms) is not int:
            walk.fail("column %r has a bad dtype or transforms" % name)
        columns[name] = [dtype, transforms, data]
    return columns
