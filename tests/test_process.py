"""Memory readers, /proc parsing and error mapping, against real processes (often this one).

The readers are pointed at the test process itself and read real objects by ``id()``
(CPython's ``id`` is the object's address), so the expected bytes are known exactly.
"""

import contextlib
import ctypes
import os
import statistics
import subprocess
import sys
import threading

import pytest

from pythons import interpreter_path, marked_lines, shared_libpython
from spyrec.errors import MemoryReadError, PermissionDenied, TargetNotFound
from spyrec.interpreter import PythonProcess
from spyrec.runtime import version_from_hex
from spyrec.layouts import layout_for
from spyrec.process import (CALIBRATION_READS, LARGE_READ, ProcessVmReader, ProcMemReader,
                            TargetMemory, parse_maps, read_maps)
from spyrec.pystrings import ObjectReader

PID = os.getpid()
READERS = [ProcMemReader, ProcessVmReader, TargetMemory]


def data_address(b):
    """Address of a bytes object's characters: ob_sval follows the 32-byte header."""
    return id(b) + 32


def unmapped_gap():
    """An address range just past the end of a mapping, where nothing is mapped."""
    maps = read_maps(PID)
    for here, following in zip(maps, maps[1:]):
        if following.start > here.end + 4096 and not here.path.startswith("["):
            return here.end
    pytest.skip("no gap in the address space")


@pytest.fixture(params=READERS, ids=lambda cls: cls.__name__)
def reader(request):
    r = request.param(PID)
    yield r
    getattr(r, "close", lambda: None)()


@pytest.mark.parametrize("size", [8, 4096, LARGE_READ, 256 * 1024])
def test_read_returns_exact_bytes(reader, size):
    blob = os.urandom(size)
    assert reader.read(data_address(blob), size) == blob


def test_read_unmapped_raises_memory_read_error(reader):
    with pytest.raises(MemoryReadError):
        reader.read(8, 8)
    end = unmapped_gap()
    with pytest.raises(MemoryReadError):  # crosses the end of a mapping: a short read
        reader.read(end - 8, 16)


def test_read_many_reports_each_range(reader):
    a, b = os.urandom(64), os.urandom(5000)
    end = unmapped_gap()
    ranges = [(8, 8), (data_address(a), 64), (end - 8, 16), (data_address(b), 5000), (16, 4)]
    # THEN unreadable ranges give None wherever they are in the batch, the others their bytes
    assert reader.read_many(ranges) == [None, a, None, b, None]
    assert reader.read_many([]) == []


def test_target_memory_keeps_the_cheaper_batched_reader():
    # GIVEN a target memory reader that has not batched any read yet
    reader = TargetMemory(PID)
    a, b = os.urandom(64), os.urandom(5000)
    end = unmapped_gap()
    ranges = [(8, 8), (data_address(a), 64), (end - 8, 16), (data_address(b), 5000)]
    assert reader.batched is None
    # WHEN it batches reads, alternately by process_vm_readv and by preads
    for _ in range(2 * CALIBRATION_READS):
        assert reader.read_many(ranges) == [None, a, None, b]
    # THEN it keeps the reader whose median time per range was the lower, and reads the same
    vm_ns, pread_ns = (statistics.median(found) for found in reader._timings)
    kept = reader.vm.read_many if vm_ns < pread_ns else reader.mem.read_many
    assert reader.batched == kept, (vm_ns, pread_ns)
    assert reader.read_many(ranges) == [None, a, None, b]
    blob = os.urandom(LARGE_READ)
    assert reader.read(data_address(blob), LARGE_READ) == blob
    reader.close()


def test_read_many_beyond_iov_max():
    blobs = [os.urandom(16) for _ in range(1500)]
    reader = ProcessVmReader(PID)
    assert reader.read_many([(data_address(x), 16) for x in blobs]) == blobs


def test_parse_maps_lines():
    text = ("00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/python3.11\n"
            "7f00-7f80 rw-p 00001000 00:00 0 \n"
            "7f80-7f90 r--p 00002000 08:02 42 /opt/my dir/libpython3.9.so.1.0 (deleted)\n")
    maps = parse_maps(text)
    assert [(m.start, m.end, m.perms, m.offset, m.inode) for m in maps] == [
        (0x400000, 0x452000, "r-xp", 0, 173521), (0x7F00, 0x7F80, "rw-p", 0x1000, 0),
        (0x7F80, 0x7F90, "r--p", 0x2000, 42)]
    assert maps[1].path == "" and maps[2].path == "/opt/my dir/libpython3.9.so.1.0 (deleted)"
    assert maps[2].deleted and not maps[0].deleted


def test_nonexistent_process():
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read())
    with pytest.raises(TargetNotFound):
        ProcMemReader(pid)
    with pytest.raises(TargetNotFound):
        read_maps(pid)


def test_permission_denied_without_ptrace_rights():
    # GIVEN a child that dropped root (and with it CAP_SYS_PTRACE) to nobody
    rd, wr = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(rd)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            TargetMemory(PID)
            result = b"no error"
        except PermissionDenied as exc:
            result = b"PermissionDenied: " + str(exc).encode()
        except BaseException as exc:
            result = repr(exc).encode()
        os.write(wr, result)
        os._exit(0)
    os.close(wr)
    with os.fdopen(rd, "rb") as f:
        result = f.read().decode()
    os.waitpid(child, 0)
    # WHEN it opens our memory THEN it gets PermissionDenied with the hint
    assert result.startswith("PermissionDenied: cannot read the memory of process %d" % PID)
    assert PermissionDenied.HINT in result


@pytest.mark.parametrize("text", ["plain ascii", "caf\u00e9 (latin-1)", "\u95a2\u6570 (ucs2)",
                                  "\U0001f600 astral", "x" * 300, "\u00e9" * 100, ""])
def test_object_reader_decodes_every_kind(text):
    s = "".join(list(text))  # a fresh, non-interned object
    hexversion = sys.hexversion
    layout = layout_for(version_from_hex(hexversion)[0], debug_blob=_own_debug_blob())
    objects = ObjectReader(ProcMemReader(PID), layout.strings, layout.ob_type, id(str), id(bytes))
    assert objects.read_str(id(s)) == s
    assert objects.read_bytes(id(text.encode())) == text.encode()
    with pytest.raises(MemoryReadError):  # a bytes object is not a str
        objects.read_str(id(b"not a str"))


def _own_debug_blob():
    """This interpreter's _Py_DebugOffsets (3.13+), read through its own _PyRuntime."""
    if sys.version_info < (3, 13):
        return None
    runtime = ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime")
    return ctypes.string_at(ctypes.addressof(runtime), 1024)


def test_attach_to_ourselves_sees_this_frame():
    # GIVEN this process attached to itself, sampled from a helper thread while this thread
    # waits at a known line (a thread sampling itself races with its own frames), until this
    # thread is seen there without the GIL
    marks = marked_lines(__file__)
    result = {}
    main = threading.get_ident()

    def sample_until_joined():
        for _ in range(1000):  # until this thread has reached join()
            result["stacks"] = proc.sample_threads()
            for stack in result["stacks"]:
                if stack.python_thread_id == main and not stack.holds_gil and any(
                        proc.codes.describe(*f).line == marks["self-join"] for f in stack.frames):
                    return

    with PythonProcess.attach(PID) as proc:
        sampler = threading.Thread(target=sample_until_joined)
        sampler.start()
        sampler.join()  # @self-join
        stacks = result["stacks"]
        mine = [s for s in stacks if s.python_thread_id == threading.get_ident()]
        theirs = [s for s in stacks if s.python_thread_id == sampler.ident]
        # THEN this thread's stack has this function at the join line
        assert len(mine) == 1 and not mine[0].torn
        assert mine[0].native_tid == threading.get_native_id()
        frames = [proc.codes.describe(*f) for f in mine[0].frames]
        here = [f for f in frames if f.name == "test_attach_to_ourselves_sees_this_frame"]
        assert here and here[0].line == marks["self-join"]
        assert here[0].filename == __file__
        # AND once blocked in join() it is seen without the GIL (until the lock is reached it
        # still runs join()'s Python code and holds it, so the helper samples until then)
        assert len(theirs) == 1 and not mine[0].holds_gil


@contextlib.contextmanager
def _python_running(code, *args):
    """This Python running ``code`` (with ``args``), once it has printed its first line: (its
    process, that line)."""
    target = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                              text=True)
    try:
        yield target, target.stdout.readline().strip()
    finally:
        target.kill()
        target.wait()


def test_a_libpython_mapped_as_data_is_not_taken_for_the_interpreter():
    # GIVEN a Python process that maps another version's libpython read-only, as a tool that
    # reads libraries does (spyrec's own unwinder among them)
    library = next((shared_libpython(p) for p in (interpreter_path(label)
                                                  for label in ("3.12", "3.8", "3.13"))
                    if os.path.exists(p)), None)
    if not library or sys.version_info[:2] == tuple(
            int(n) for n in os.path.basename(library)[len("libpython"):].split(".")[:2]):
        pytest.skip("no libpython of another version than this Python's")
    code = ("import mmap, sys, time\nf = open(sys.argv[1], 'rb')\n"
            "m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n"
            "print('ready', flush=True)\ntime.sleep(30)\n")
    with _python_running(code, library) as (target, said):
        assert said == "ready"
        # WHEN spyrec attaches to it
        with PythonProcess.attach(target.pid) as proc:
            # THEN it finds the interpreter that runs it, not the library it maps
            assert proc.version_string.startswith("%d.%d." % sys.version_info[:2])
            assert proc.sample_threads()


def test_a_process_that_maps_its_own_interpreter_as_data_is_read_right():
    # GIVEN a Python process that maps, read-only, every file it runs code from (its
    # executable, its libpython if any, the C library), as spyrec's own unwinder maps the
    # libraries it reads
    code = ("import mmap, time\npaths = {line.split()[-1] for line in open('/proc/self/maps')\n"
            "         if line.split()[1][2] == 'x' and line.split()[-1].startswith('/')}\n"
            "files = [open(p, 'rb') for p in sorted(paths)]\n"
            "kept = [mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) for f in files]\n"
            "print(len(kept), flush=True)\ntime.sleep(30)\n")
    with _python_running(code) as (target, said):
        assert int(said) >= 2
        # WHEN spyrec attaches to it
        with PythonProcess.attach(target.pid) as proc:
            # THEN it finds the runtime where the loader put it, and reads the main thread
            assert proc.version_string.startswith("%d.%d." % sys.version_info[:2])
            stacks = proc.sample_threads()
            assert len(stacks) == 1 and stacks[0].frames
