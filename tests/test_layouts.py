"""The offset tables against the DWARF of each pyenv libpython, and the 3.13 debug offsets.

The layouts were produced with gcc ``offsetof`` against each version's headers;
this re-derives every offset the walker uses from the debug info the pyenv builds carry
(pyelftools, about a second per library), so a typo in a table cannot survive.  3.13 layouts
are built from the ``_Py_DebugOffsets`` blob, here read from the library's ``.PyRuntime``
section (it is statically initialised), and checked the same way.
"""

import os

import pytest
from elftools.elf.elffile import ELFFile

from pythons import SUPPORTED, python_for
from spyrec.layouts import LAYOUTS, layout_for
from spyrec.layouts.debug_offsets import V3_13, V3_14, DebugOffsetsSpec

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

#: Compilation units whose DWARF defines the structs we need.
UNITS = ("pystate.c", "codeobject.c", "ceval.c", "unicodeobject.c", "frameobject.c",
         "pylifecycle.c", "dictobject.c", "typeobject.c", "moduleobject.c", "longobject.c",
         "genobject.c")


class DwarfStructs:
    """Struct/typedef DIEs by name from a few compilation units of one ELF file."""

    def __init__(self, path):
        self.file = open(path, "rb")
        self.elf = ELFFile(self.file)
        self.dies = {}
        for cu in self.elf.get_dwarf_info().iter_CUs():
            top = cu.get_top_DIE()
            name = top.attributes.get("DW_AT_name")
            if not name or not name.value.decode().endswith(UNITS):
                continue
            # the structs are declared at file scope: the unit's own children, whose siblings
            # links skip the functions' bodies (most of the DWARF) unparsed
            for die in top.iter_children():
                if die.tag in ("DW_TAG_structure_type", "DW_TAG_typedef") \
                        and "DW_AT_name" in die.attributes \
                        and "DW_AT_declaration" not in die.attributes:
                    self.dies.setdefault(die.attributes["DW_AT_name"].value.decode(), die)

    @staticmethod
    def _struct(die):
        while die.tag in ("DW_TAG_typedef", "DW_TAG_volatile_type", "DW_TAG_const_type"):
            die = die.get_DIE_from_attribute("DW_AT_type")
        return die

    def offset(self, struct, path):
        die = self._struct(self.dies[struct])
        total = 0
        for part in path.split("."):
            for member in die.iter_children():
                name = member.attributes.get("DW_AT_name")
                if member.tag == "DW_TAG_member" and name and name.value.decode() == part:
                    total += member.attributes["DW_AT_data_member_location"].value
                    die = self._struct(member.get_DIE_from_attribute("DW_AT_type"))
                    break
            else:
                raise KeyError("%s has no member %s" % (struct, path))
        return total

    def sizeof(self, struct):
        return self._struct(self.dies[struct]).attributes["DW_AT_byte_size"].value


def libpython(label):
    bindir = os.path.dirname(os.path.realpath(python_for(label)))
    path = os.path.join(os.path.dirname(bindir), "lib", "libpython%s.so.1.0" % label)
    if not os.path.exists(path):
        pytest.skip("no libpython for %s: %s" % (label, path))
    return path


def layout_of(label, path):
    minor = tuple(int(x) for x in label.split("."))
    entry = LAYOUTS[minor]
    if not isinstance(entry, DebugOffsetsSpec):
        return entry
    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".PyRuntime")
        blob = section.data()[:entry.size]
    return layout_for(minor + (0,), label, blob)


def expected_members(layout, minor):
    """(our value, C struct, member path) for every offset the walker reads."""
    old = minor < (3, 12)
    rt, it, ts, fr, co = layout.runtime, layout.interp, layout.thread, layout.frame, layout.code
    yield rt.interpreters_head, "pyruntimestate", "interpreters.head"
    if rt.gil is not None:
        yield rt.gil, "pyruntimestate", "ceval.gil"
    if rt.gc_collecting is not None:
        yield rt.gc_collecting, "pyruntimestate", "gc.collecting"
    if it.gc_collecting is not None:
        yield it.gc_collecting, "_is", "gc.collecting"
    yield it.next, "_is", "next"
    yield it.tstate_head, "_is", "tstate_head" if minor < (3, 11) else "threads.head"
    yield it.modules, "_is", "modules" if old else "imports.modules"
    if it.ceval_gil is not None:
        yield it.ceval_gil, "_is", "ceval.gil"
        yield it.gil, "_is", "_gil"
    yield layout.gil.last_holder, "_gil_runtime_state", "last_holder"
    yield layout.gil.locked, "_gil_runtime_state", "locked"
    for name in ("prev", "next", "interp", "thread_id"):
        yield getattr(ts, name), "_ts", name
    yield ts.frame, "_ts", {"frame": "frame", "cframe": "cframe",
                            "current_frame": "current_frame"}[layout.thread_frame_kind]
    if ts.native_thread_id is not None:
        yield ts.native_thread_id, "_ts", "native_thread_id"
        yield ts.datastack_chunk, "_ts", "datastack_chunk"
        yield ts.datastack_top, "_ts", "datastack_top"
        for name in ("previous", "size", "top", "data"):
            yield getattr(layout.chunk, name), "_PyStackChunk", name
    if layout.cframe is not None:
        yield layout.cframe.current_frame, "_PyCFrame", "current_frame"
    if layout.frame_kind == "pyframe":
        yield fr.code, "_frame", "f_code"
        yield fr.previous, "_frame", "f_back"
        yield fr.instr, "_frame", "f_lasti"
    else:
        yield fr.code, "_PyInterpreterFrame", "f_code" if minor < (3, 13) else "f_executable"
        yield fr.previous, "_PyInterpreterFrame", "previous"
        yield fr.instr, "_PyInterpreterFrame", "prev_instr" if old or minor == (3, 12) \
            else "instr_ptr"
        yield fr.owner, "_PyInterpreterFrame", "owner"
    yield co.co_firstlineno, "PyCodeObject", "co_firstlineno"
    yield co.co_filename, "PyCodeObject", "co_filename"
    yield co.co_name, "PyCodeObject", "co_name"
    yield co.co_linetable, "PyCodeObject", "co_lnotab" if minor < (3, 10) else "co_linetable"
    if co.co_qualname is not None:
        yield co.co_qualname, "PyCodeObject", "co_qualname"
        yield co.co_code_adaptive, "PyCodeObject", "co_code_adaptive"
    ob = layout.objects
    for name in ("tp_basicsize", "tp_flags", "tp_dictoffset"):
        yield getattr(ob, name), "_typeobject", name
    if minor >= (3, 11):  # only read for managed dicts
        yield ob.ht_cached_keys, "_heaptypeobject", "ht_cached_keys"
        yield ob.dict_values, "_dictvalues", "values"
    yield ob.md_dict, "PyModuleObject", "md_dict"
    for name in ("ma_used", "ma_keys", "ma_values"):
        yield getattr(ob, name), "PyDictObject", name
    yield ob.dk_nentries, "_dictkeysobject", "dk_nentries"
    yield ob.dk_indices, "_dictkeysobject", "dk_indices"
    if ob.dict_keys_kind == "log2":
        for name in ("dk_log2_size", "dk_log2_index_bytes", "dk_kind"):
            yield getattr(ob, name), "_dictkeysobject", name
        yield ob.unicode_entry_size, "sizeof", "PyDictUnicodeEntry"
    else:
        yield ob.dk_size, "_dictkeysobject", "dk_size"
    yield ob.general_entry_size, "sizeof", "PyDictKeyEntry"
    if ob.long_kind == "lv_tag":
        yield ob.long_size, "_longobject", "long_value.lv_tag"
        yield ob.ob_digit, "_longobject", "long_value.ob_digit"
    else:
        yield ob.long_size, "PyVarObject", "ob_size"
        yield ob.ob_digit, "_longobject", "ob_digit"
    yield layout.ob_type, "_object", "ob_type"
    aw = layout.awaits
    if layout.frame_kind == "pyframe":
        yield layout.gen_frame_pointer, "PyGenObject", "gi_frame"
        yield aw.valuestack, "_frame", "f_valuestack"
        yield aw.stack_top, "_frame", "f_stacktop" if minor < (3, 10) else "f_stackdepth"
        if aw.frame_state is not None:
            yield aw.frame_state, "_frame", "f_state"
        yield aw.co_code, "PyCodeObject", "co_code"
    else:
        yield layout.gen_iframe, "PyGenObject", "gi_iframe"
        yield aw.frame_state, "PyGenObject", "gi_frame_state"
        yield aw.stack_top, "_PyInterpreterFrame", "stacktop"
        yield aw.localsplus, "_PyInterpreterFrame", "localsplus"
    yield layout.strings.length, "PyASCIIObject", "length"
    yield layout.strings.state, "PyASCIIObject", "state"
    yield layout.strings.bytes_size, "PyVarObject", "ob_size"


@pytest.mark.parametrize("label", SUPPORTED)
def test_layout_matches_dwarf(label):
    path = libpython(label)
    dwarf = DwarfStructs(path)
    minor = tuple(int(x) for x in label.split("."))
    layout = layout_of(label, path)
    wrong = []
    for value, struct, member in expected_members(layout, minor):
        actual = dwarf.sizeof(member) if struct == "sizeof" else dwarf.offset(struct, member)
        if value != actual:
            wrong.append("%s.%s: table %s, DWARF %s" % (struct, member, value, actual))
    sizes = [(layout.thread.size, "_ts"), (layout.code.size, "PyCodeObject"),
             (layout.strings.ascii_data, "PyASCIIObject"),
             (layout.strings.compact_data, "PyCompactUnicodeObject")]
    for value, struct in sizes:
        if value != dwarf.sizeof(struct):
            wrong.append("sizeof(%s): table %s, DWARF %s" % (struct, value, dwarf.sizeof(struct)))
    assert not wrong


def test_debug_offsets_specs_have_the_documented_sizes():
    # 3.13: 584 bytes (checked live); 3.14: 760 bytes with groups at the §2.3 positions
    assert V3_13.size == 584
    assert V3_14.size == 760
    position, starts = 24, {}
    for group, fields in V3_14.groups:
        starts[group] = position
        position += 8 * len(fields)
    assert starts == {"runtime_state": 24, "interpreter_state": 48, "thread_state": 176,
                      "interpreter_frame": 248, "code_object": 312, "pyobject": 400,
                      "type_object": 416, "tuple_object": 448, "list_object": 472,
                      "set_object": 496, "dict_object": 528, "float_object": 552,
                      "long_object": 568, "bytes_object": 592, "unicode_object": 616,
                      "gc": 648, "gen_object": 664, "llist_node": 696, "debugger_support": 712}
