"""The SAMPLES chunk's columns: which there are, their dtypes and transforms, and the encoding of
one column's values to bytes and back (formats/spy.md, "SAMPLES")."""

import array
import itertools
import operator
import sys

from spyformat.errors import CorruptRecording


class SampleFlag:
    """Bits of the ``flags`` sample column."""

    IDLE = 1      # the thread was not running (not on a CPU / not runnable) when sampled
    GIL = 2       # the thread held the GIL
    TORN = 4      # the stack could not be read consistently; it holds what was read


class Transform:
    """Bits describing how a sample column's bytes encode its values."""

    DELTA = 1     # stored values are differences; the reader takes a running sum (first is absolute)
    SHUFFLE = 2   # bytes are stored plane by plane: every value's byte 0, then every byte 1, ...


#: dtype code -> (struct/array typecode, item size).  numpy reads the same codes with "<" prepended.
DTYPES = {"u1": ("B", 1), "u2": ("H", 2), "u4": ("I", 4), "i4": ("i", 4), "u8": ("Q", 8), "i8": ("q", 8)}

#: The sample columns written by format 1.1: name -> (dtype, transforms).  Readers ignore
#: columns they do not know and treat a missing optional column as zeros.
SAMPLE_COLUMNS = {
    "t": ("i8", Transform.DELTA | Transform.SHUFFLE),      # ns since the header's monotonic origin
    "pid": ("u4", Transform.SHUFFLE),                        # process id
    "tid": ("u4", Transform.SHUFFLE),                        # native (kernel) thread id
    "stack": ("u4", Transform.SHUFFLE),                      # stack id
    "cpu": ("i8", Transform.SHUFFLE),                        # ns of CPU since the thread's last sample
    "rss": ("i8", Transform.DELTA | Transform.SHUFFLE),     # process resident set size, bytes
    "flags": ("u1", 0),                                      # SampleFlag bits
    "syscall": ("u4", Transform.SHUFFLE),   # 1.1: 1 + string id of the system call waited in
    "wchan": ("u4", Transform.SHUFFLE),     # 1.1: 1 + string id of the kernel function
}
#: Sample columns holding 1 + a string id, 0 for none.
STRING_SAMPLE_COLUMNS = ("syscall", "wchan")
REQUIRED_SAMPLE_COLUMNS = ("t", "tid", "stack")


def _assert_little_endian():
    if sys.byteorder != "little":  # pragma: no cover - every platform we record on is little-endian
        raise RuntimeError("the .spy codec assumes a little-endian host")


_assert_little_endian()


# --------------------------------------------------------------------------------------------
# Column encoding


class ColumnEncoder:
    """Encodes one sample column from consecutive slices of its values, so that a large batch
    can be encoded a slice at a time (see ``SpyWriter.work``) into the same bytes as at once:
    DELTA carries the last value over, SHUFFLE keeps each byte plane's pieces apart."""

    def __init__(self, dtype, transforms):
        self._typecode, self._size = DTYPES[dtype]
        self._delta = bool(transforms & Transform.DELTA)
        self._planes = self._size if transforms & Transform.SHUFFLE and self._size > 1 else 1
        self._pieces = [[] for _ in range(self._planes)]
        self._previous = 0

    def add(self, values):
        """Encode the next values: a list, or an array of the column's own typecode (whose
        bytes are taken as they are, with no conversion per value)."""
        if self._delta and len(values):  # each value minus the one before (the first minus 0)
            previous, self._previous = self._previous, values[-1]
            values = list(map(operator.sub, values, itertools.chain((previous,), values)))
        if isinstance(values, array.array) and values.typecode == self._typecode:
            data = values.tobytes()
        else:
            data = array.array(self._typecode, values).tobytes()
        planes = self._planes
        for plane, pieces in enumerate(self._pieces):
            pieces.append(data[plane::planes] if planes > 1 else data)
        return self

    def encoded(self):
        return b"".join(b"".join(pieces) for pieces in self._pieces)


def new_column(dtype):
    """An empty array for a column's values: appending converts each value once, and the
    encoder then takes the array's bytes whole."""
    return array.array(DTYPES[dtype][0])


def encode_column(values, dtype, transforms):
    """Encode a sequence of ints as the bytes of one sample column."""
    return ColumnEncoder(dtype, transforms).add(list(values)).encoded()


def decode_column(data, dtype, transforms, count):
    """Decode one sample column into a numpy array of ``count`` values (no loop per value)."""
    import numpy as np

    if dtype not in DTYPES:
        raise CorruptRecording("unknown column dtype %r" % (dtype,))
    size = DTYPES[dtype][1]
    if len(data) != count * size:
        raise CorruptRecording("column holds %d bytes, expected %d x %d" % (len(data), count, size))
    raw = np.frombuffer(data, dtype=np.uint8)
    if transforms & Transform.SHUFFLE and size > 1:
        raw = raw.reshape(size, count).T
    values = np.ascontiguousarray(raw).view("<" + dtype).reshape(count)
    if transforms & Transform.DELTA:
        values = np.cumsum(values, dtype=values.dtype)
    return values
