"""CPython 3.14 and 3.15 (Debian sid's, in the root scripts/make-sid-root.sh prepares), and
minors newer than spyrec knows.

Their ``_Py_DebugOffsets`` blobs are read from the binaries (the blob is statically initialised
in ``.PyRuntime``) and from live targets; test_walker.py and test_record.py check the stacks,
lines, thread ids, names and GIL flags walked with them.  Here:

* each field list places every group where the blob has it, and passes every check;
* a wrong field list (another minor's, a debug build's) is refused with a one-line reason;
* a minor newer than the newest list is read with that list when its blob and a live walk
  check out (a live 3.15 target relabelled 3.16.0 in memory is recorded exactly), and refused,
  naming the version and the failed check, when they do not;
* the line-table decoder agrees with CPython 3.14/3.15's own ``co_positions()``;
* launch mode through chroot (``spyrec -- chroot ROOT python3.15 app.py``) works.
"""

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections import Counter

import pytest
from elftools.elf.elffile import ELFFile

from conftest import attached
from linetable_check import assert_decoder_matches
from pythons import (ROOTED, marked_lines, python_for, running_target, stage_targets,
                     target_path)
from spyrec.errors import UnsupportedPython
from spyrec.interpreter import PythonProcess
from spyrec.layouts import LAYOUTS, debug_offsets_size, layout_for
from spyrec.layouts.debug_offsets import PREFIX, V3_13, V3_14, V3_15, blob_problem
from spyrec.process import read_maps, target_file, target_view
from spyformat import read_recording

SPYREC = [sys.executable, "-m", "spyrec"]
SPECS = {"3.13": V3_13, "3.14": V3_14, "3.15": V3_15}
MARKS = marked_lines(target_path("stacks.py"))
DEEP_MARKS = marked_lines(target_path("deep.py"))


def version_tuple(text):
    return tuple(int(x) for x in text.split(".")[:3])


def file_blob(label):
    """The statically initialised ``_Py_DebugOffsets`` from the binary's ``.PyRuntime``."""
    if label == "3.13":
        bindir = os.path.dirname(os.path.realpath(python_for(label)))
        path = os.path.join(os.path.dirname(bindir), "lib", "libpython3.13.so.1.0")
    else:
        path = python_for(label).host_path
    with open(path, "rb") as f:
        return ELFFile(f).get_section_by_name(".PyRuntime").data()[:4096]


def relabel(blob, version_hex):
    return blob[:8] + struct.pack("<Q", version_hex) + blob[16:]


def group_starts(spec):
    position, starts = PREFIX.size, {}
    for group, fields in spec.groups:
        starts[group] = position
        position += 8 * len(fields)
    return starts


def spyrec(*args, timeout=60):
    return subprocess.run(SPYREC + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


# -- the field lists against the real blobs --------------------------------------------------


def test_field_lists_have_the_documented_sizes():
    assert (V3_13.size, V3_14.size, V3_15.size) == (584, 760, 888)
    # 3.15 (header of 3.15; positions confirmed on the 3.15.2 blob below)
    starts = group_starts(V3_15)
    assert starts == {"runtime_state": 24, "interpreter_state": 48, "thread_state": 176,
                      "err_stackitem": 304, "interpreter_frame": 312, "code_object": 376,
                      "pyobject": 464, "type_object": 480, "heap_type_object": 528,
                      "tuple_object": 544, "list_object": 568, "set_object": 592,
                      "dict_object": 624, "float_object": 648, "long_object": 664,
                      "bytes_object": 688, "unicode_object": 712, "gc": 752,
                      "gen_object": 792, "llist_node": 824, "debugger_support": 840}


@pytest.mark.parametrize("label", ("3.13",) + ROOTED)
def test_release_blob_passes_every_check(label):
    # GIVEN the blob a release build carries
    blob = file_blob(label)
    spec = SPECS[label]
    version = struct.unpack_from("<Q", blob, 8)[0]
    assert blob[:8] == b"xdebugpy" and version >> 16 == 0x0300 | int(label.split(".")[1])
    # THEN its own field list reads it with no complaint
    d = spec.parse(blob)
    assert blob_problem(d) == ""
    # AND every group's size field sits where the list puts it (sizes of the C structs)
    sizes = {group: d[group]["size"] for group, fields in spec.groups if fields[0] == "size"}
    assert sizes["pyobject"] == 16 and sizes["dict_object"] == 48
    assert 48 <= sizes["interpreter_frame"] <= 128 and 200 <= sizes["code_object"] <= 256
    if label != "3.13":
        assert sizes["set_object"] == 200 and sizes["gen_object"] == 160
    # AND the blob ends where the list does: what follows is the rest of _PyRuntimeState
    layout = layout_for(version_tuple(label + ".0"), label, blob)
    assert layout.name == "debug_offsets %s" % label and layout.guessed_from is None
    assert layout.strings.compact_data == layout.strings.ascii_data + 16
    assert layout.executable_tag_mask == (0 if label == "3.13" else 3)
    assert layout.max_frame_owner == {"3.13": 3, "3.14": 4, "3.15": 3}[label]
    assert (layout.interp.code_object_generation is None) == (label == "3.13")


@pytest.mark.parametrize("label", ROOTED)
def test_live_blob_is_the_files(label):
    # GIVEN a running target WHEN attached THEN the blob in its memory is the one in its binary
    # (only the debug offsets; the rest of _PyRuntime is live state)
    spec = SPECS[label]
    with running_target(python_for(label), "deep.py", "30", "5") as target:
        with attached(target.pid) as proc:
            live = proc.mem.read(proc.runtime_address, spec.size)
            assert proc.layout.name == "debug_offsets %s" % label
    assert live == file_blob(label)[:spec.size]


def test_a_chrooted_binary_is_found_and_named_as_the_target_sees_it():
    # GIVEN a target chrooted into the sid root: /proc shows us its files with the root's prefix
    python = python_for("3.15")
    with running_target(python, "deep.py", "30", "5") as target:
        mapping = next(m for m in read_maps(target.pid) if m.path.endswith("/python3.15"))
        assert mapping.path == python.host_path
        # THEN the ELF is opened where its inode is (not /proc/PID/root + that path), and named
        # without the prefix, as the target names it
        assert target_file(target.pid, mapping) == python.host_path
        assert target_view(target.pid, mapping.path) == "/usr/bin/python3.15"
        assert target_view(target.pid, "/etc/hostname") == "/etc/hostname"


@pytest.mark.parametrize("reader, blob_of", [("3.14", "3.13"), ("3.15", "3.14"),
                                             ("3.14", "3.15"), ("3.13", "3.15")])
def test_another_minors_blob_is_refused(reader, blob_of):
    # GIVEN a blob of one minor WHEN read with another minor's field list
    blob = relabel(file_blob(blob_of), int("0x03%02x00f0" % int(reader.split(".")[1]), 16))
    with pytest.raises(UnsupportedPython) as err:
        layout_for(version_tuple(reader + ".0"), reader + ".0", blob)
    # THEN it is refused in one line, naming the version and the value that gave it away
    message = str(err.value)
    assert message.startswith("Python %s.0: its _Py_DebugOffsets do not look like" % reader)
    assert "expected" in message and "\n" not in message


def test_a_debug_build_is_refused():
    # GIVEN a blob whose PyObject is bigger (Py_TRACE_REFS adds two pointers)
    d = bytearray(file_blob("3.15"))
    struct.pack_into("<QQ", d, group_starts(V3_15)["pyobject"], 32, 24)
    with pytest.raises(UnsupportedPython, match=r"pyobject\.size = 32, expected 16"):
        layout_for((3, 15, 2), "3.15.2", bytes(d))


# -- a minor newer than spyrec knows -----------------------------------------------------------


def test_a_newer_minor_is_read_with_the_newest_field_list():
    # GIVEN 3.15.2's blob, as a 3.16.0 whose field list did not change would carry it
    blob = relabel(file_blob("3.15"), 0x031000F0)
    assert debug_offsets_size((3, 16, 0)) == V3_15.size
    # WHEN read THEN the 3.15 list is used, and the layout says so
    layout = layout_for((3, 16, 0), "3.16.0", blob)
    assert layout.guessed_from == (3, 15)
    assert layout.name == "debug_offsets 3.15 (guessed for 3.16)"
    known = layout_for((3, 15, 2), "3.15.2", file_blob("3.15"))
    assert layout.thread == known.thread and layout.frame == known.frame
    assert layout.code == known.code and layout.objects == known.objects


def test_a_newer_minor_with_another_field_list_is_refused():
    # GIVEN a 3.16.0 blob whose thread group gained a field after current_frame (as 3.15's did)
    blob = file_blob("3.15")
    at = group_starts(V3_15)["thread_state"] + 8 * 5
    shifted = relabel(blob[:at] + struct.pack("<Q", 120) + blob[at:], 0x031000F0)
    # WHEN read THEN it is refused, naming the version, the list tried and what is missing
    with pytest.raises(UnsupportedPython) as err:
        layout_for((3, 16, 0), "3.16.0", shifted)
    message = str(err.value)
    assert message.startswith("Python 3.16.0 is newer than spyrec knows, and its "
                              "_Py_DebugOffsets do not match the 3.15 field list (")
    assert message.endswith("spyrec needs a 3.16 entry in spyrec/layouts/debug_offsets.py")
    assert "\n" not in message


@pytest.mark.parametrize("version, why", [((3, 7, 16), "older than"),
                                          ((4, 0, 0), "not one of"), ((2, 7, 18), "older than")])
def test_other_versions_are_named(version, why):
    text = ".".join(map(str, version))
    with pytest.raises(UnsupportedPython) as err:
        layout_for(version, text)
    assert str(err.value) == ("Python %s is not supported: it is %s the versions spyrec reads "
                              "(CPython 3.8 to 3.15)" % (text, why))


@contextlib.contextmanager
def relabelled_target(edit):
    """A live 3.15 stacks.py target whose ``_Py_DebugOffsets`` were rewritten by ``edit(blob)``
    (the interpreter itself never reads them: they are only there for debuggers)."""
    python = python_for("3.15")
    with running_target(python, "stacks.py", "60") as target:
        with attached(target.pid) as proc:
            runtime, size = proc.runtime_address, V3_15.size
            blob = proc.mem.read(runtime, size)
        new = edit(blob)
        with open("/proc/%d/mem" % target.pid, "r+b", buffering=0) as mem:
            mem.seek(runtime)
            mem.write(new)
        yield target


def as_316(blob):
    return relabel(blob, 0x031000F0)


def test_a_live_newer_minor_is_recorded_exactly(tmp_path):
    # GIVEN a running interpreter that says it is 3.16.0 (3.15.2 relabelled in memory)
    out = tmp_path / "x.spy"
    with relabelled_target(as_316) as target:
        with attached(target.pid) as proc:
            assert proc.version_string == "3.16.0"
            assert proc.layout.guessed_from == (3, 15)
        # WHEN recorded
        result = spyrec("-o", out, "-p", target.pid, "-d", "1", "-r", "100")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("spyrec: warning: Python 3.16.0 is newer than spyrec knows")
    with open(out, "rb") as f:
        rec = read_recording(f)
    # THEN the recording says 3.16.0 and has every thread's exact stack
    assert rec.header["python_version"] == "3.16.0"
    s, fr = rec.strings, rec.frames
    main_tid = target.info["main"]["native_id"]
    stacks = Counter(tuple((s[fr["qualname"][i]], fr["line"][i])
                           for i in reversed(rec.stacks[stack]))
                     for tid, stack in zip(rec.samples["tid"].tolist(),
                                           rec.samples["stack"].tolist()) if tid == main_tid)
    top = list(stacks.most_common(1)[0][0])
    assert top[:2] == [("main_sleep", MARKS["main-sleep"]), ("recurse", MARKS["recurse-leaf"])]
    assert top[-2:] == [("main", MARKS["main-call"]), ("<module>", MARKS["module-call"])]
    names = {t["name"] for t in rec.threads.values()}
    assert names == {"MainThread"} | set(target.info["threads"])


def test_a_live_newer_minor_that_walks_wrong_is_refused(tmp_path):
    # GIVEN a "3.16.0" whose blob passes the static checks but names the wrong thread fields
    # (thread_id and native_thread_id swapped: both are aligned and inside the struct)
    ts = group_starts(V3_15)["thread_state"]
    tid_at, native_at = ts + 8 * 8, ts + 8 * 9

    def swap(blob):
        b = bytearray(as_316(blob))
        b[tid_at:tid_at + 8], b[native_at:native_at + 8] = blob[native_at:native_at + 8], \
            blob[tid_at:tid_at + 8]
        return bytes(b)

    with relabelled_target(swap) as target:
        # WHEN attached THEN the live walk gives it away, and the message says what is missing
        with pytest.raises(UnsupportedPython) as err:
            PythonProcess.attach(target.pid)
        result = spyrec("-o", tmp_path / "x.spy", "-p", target.pid, "-d", "1")
    message = str(err.value)
    assert message.startswith("Python 3.16.0 is newer than spyrec knows, and walking it with "
                              "the 3.15 layout failed (")
    assert "not one of the process's" in message
    assert message.endswith("spyrec needs a 3.16 entry in spyrec/layouts/debug_offsets.py")
    assert result.returncode != 0 and result.stderr == "spyrec: error: %s\n" % message
    assert not (tmp_path / "x.spy").exists()


def test_a_live_newer_minor_with_another_field_list_is_refused(tmp_path):
    # GIVEN a "3.16.0" whose thread group is one field longer than 3.15's
    at = group_starts(V3_15)["thread_state"] + 8 * 5

    def shift(blob):
        return as_316(blob[:at] + struct.pack("<Q", 120) + blob[at:-8])

    with relabelled_target(shift) as target:
        result = spyrec("-o", tmp_path / "x.spy", "-p", target.pid, "-d", "1")
    # THEN one line, naming the version found and what spyrec lacks
    assert result.returncode != 0
    assert result.stderr.startswith("spyrec: error: Python 3.16.0 is newer than spyrec knows")
    assert "needs a 3.16 entry" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_version_names_the_supported_range():
    result = spyrec("--version")
    assert result.returncode == 0
    assert result.stdout.strip().endswith("(records CPython 3.8 to 3.15)")
    assert sorted(LAYOUTS)[-1] == (3, 15)


# -- line tables, launch mode -----------------------------------------------------------------


@pytest.mark.parametrize("label", ROOTED)
def test_decoder_matches_cpython(label):
    # GIVEN CPython's own co_positions() for every code unit of many code objects, dumped by
    # the interpreter in the root
    python = python_for(label)
    where = tempfile.mkdtemp(prefix="spyrec-linetable-", dir=os.path.join(python.root, "tmp"))
    try:
        shutil.copy(os.path.join(os.path.dirname(__file__), "linetable_dump.py"), where)
        inside = os.path.join(where[len(python.root):], "linetable_dump.py")
        result = subprocess.run(["chroot", python.root, python, inside], capture_output=True,
                                timeout=300)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert result.returncode == 0, result.stderr.decode()
    dump = json.loads(result.stdout)
    # WHEN our 3.11+ decoder reads the same bytes THEN every line and column agrees
    kind = layout_for(tuple(dump["version"]) + (0,), label, file_blob(label)).linetable_kind
    assert_decoder_matches(dump, kind)


def test_launch_through_chroot(tmp_path):
    # GIVEN a command that chroots into the root and execs python3.15 there
    python = python_for("3.15")
    script = os.path.join(stage_targets(python.root), "deep.py")
    out = tmp_path / "launch.spy"
    # WHEN launched under spyrec (the PID is chroot's until it execs python: attach retries)
    result = spyrec("-o", out, "-r", "200", "--", "chroot", python.root, python, script,
                    "1.5", "6", "sleep", timeout=120)
    assert result.returncode == 0, result.stderr
    with open(out, "rb") as f:
        rec = read_recording(f)
    # THEN the interpreter is recorded until it exits, its files named as it sees them
    assert rec.header["mode"] == "launch" and rec.header["python_version"] == "3.15.2"
    assert rec.header["python_executable"] == "/usr/bin/python3.15"
    assert rec.trailer["stop_reason"] == "target exited"
    s, fr = rec.strings, rec.frames
    leaves = Counter((s[fr["qualname"][rec.stacks[stack][-1]]], fr["line"][rec.stacks[stack][-1]],
                      s[fr["file"][rec.stacks[stack][-1]]])
                     for stack in rec.samples["stack"].tolist() if rec.stacks[stack])
    assert leaves.most_common(1)[0][0] == ("leaf", DEEP_MARKS["leaf-sleep"], script)
