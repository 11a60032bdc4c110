"""The source file and line of native code (spyrec.elflines), against binutils' own decoding.

For addresses picked at random inside the functions of real ELF files (CPython's library and a
C extension built with debug information; the C library through the separate debug file of
Debian's ``libc6-dbg``), the line table must give the file and line that ``readelf
--debug-dump=decodedline`` lists for the instruction.  (``addr2line`` is no oracle: on DWARF 5
it names file entry 0 where the line program says file 1.)  The codec keeps a native frame's
source file, and a recording without any reads as before.
"""

import bisect
import io
import os
import random
import shutil
import subprocess

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

import spyformat
from pythons import interpreter_path, shared_libpython
from spyrec.elflines import debug_file, line_table
from spyrec.symbols import ElfImage, load_elf

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

#: Addresses checked per file.
PICKS = 200
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def readelf_rows(path):
    """{address: (file name, line or None)} of every row, the last one at an address winning
    (None: a sequence ends there), as binutils decodes the line programs."""
    out = subprocess.run(["readelf", "--debug-dump=decodedline", "-W", path], capture_output=True,
                         text=True, errors="replace", check=True).stdout
    rows = []
    for order, text in enumerate(out.splitlines()):
        parts = text.split()
        if len(parts) < 3 or not parts[2].startswith("0x"):
            continue
        try:
            address = int(parts[2], 16)
        except ValueError:
            continue
        ends = parts[1] == "-"
        if not ends and not parts[1].isdigit():
            continue
        rows.append((address, not ends, order, os.path.basename(parts[0]),
                     None if ends else int(parts[1])))
    rows.sort()
    return rows


def functions(path):
    with open(path, "rb") as f:
        elf = ELFFile(f)
        table = elf.get_section_by_name(".symtab") or elf.get_section_by_name(".dynsym")
        return [(s["st_value"], s["st_size"]) for s in table.iter_symbols()
                if s["st_info"]["type"] == "STT_FUNC" and s["st_value"] and s["st_size"] > 4]


def library_files():
    """(id, library, file whose DWARF describes it) for the files this machine has."""
    found = []
    for label in ("3.8", "3.12", "3.13"):
        python = interpreter_path(label)
        if not os.path.exists(python):
            continue
        if label != "3.13":  # (3.12's is of its kind)
            library = shared_libpython(python)
            if library:
                found.append(("libpython" + label, library, library))
            continue
        zlib = subprocess.run([python, "-c", "import zlib; print(zlib.__file__)"],
                              capture_output=True, text=True).stdout.strip()
        if zlib:
            found.append(("zlibmodule" + label, zlib, zlib))
    with open(LIBC, "rb") as f:
        separate = debug_file(ELFFile(f), "/", LIBC)
    if separate:
        found.append(("libc-dbg", LIBC, separate))
    return found


@pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf (binutils) to compare with")
@pytest.mark.parametrize("name,library,described",
                         [pytest.param(*files, id=files[0]) for files in library_files()])
def test_each_address_has_the_line_binutils_decodes(name, library, described):
    table = line_table(load_elf(library), load_elf(described) if described != library else None)
    rows = readelf_rows(described)
    addresses = [row[0] for row in rows]
    rng = random.Random(name)
    candidates = functions(library)
    picks = [start + rng.randrange(size)
             for start, size in (rng.choice(candidates) for _ in range(PICKS))]
    known = 0
    for address in picks:
        i = bisect.bisect_right(addresses, address) - 1
        expected = None
        if i >= 0 and rows[i][4]:
            expected = (rows[i][3], rows[i][4])
        found = table.line(address)
        got = None if found is None else (os.path.basename(found[0]), found[1])
        assert got == expected, (name, hex(address), got, expected)
        known += got is not None
    assert known >= PICKS * 0.9, (name, known)
    if described != library:  # the line came from the debug file, by the library's build id
        assert os.path.realpath(described).startswith("/usr/lib/debug/")


def addr2line_chains(path, addresses):
    """{address: [(function, line), ...]} as binutils' ``addr2line -i`` gives them: the function
    inlined at the address and its line first, then each caller and the line of its call."""
    out = subprocess.run(["addr2line", "-a", "-f", "-i", "-e", path] + ["0x%x" % a for a in addresses],
                         capture_output=True, text=True, errors="replace", check=True).stdout
    chains, current, lines = {}, None, out.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("0x"):
            current = chains.setdefault(int(lines[i], 16), [])
            i += 1
            continue
        where = lines[i + 1].split(" ")[0]
        line = where.rsplit(":", 1)[-1]
        current.append((lines[i], int(line) if line.isdigit() else 0))
        i += 2
    return chains


@pytest.mark.skipif(shutil.which("addr2line") is None, reason="no addr2line (binutils) to compare with")
@pytest.mark.parametrize("name,library,described",
                         [pytest.param(*files, id=files[0]) for files in library_files()])
def test_inlined_functions_are_frames_as_binutils_sees_them(name, library, described):
    """Where the compiler inlined a function, each inlined call is a place of its own: the
    inlined function at the instruction's line, then its caller at the line of the call, as
    ``addr2line -i`` lists them (its file names are not compared: see the module's note).  The
    outermost is the function the symbols name (None here)."""
    table = line_table(load_elf(library), load_elf(described) if described != library else None)
    rng = random.Random(name + "inlined")
    candidates = functions(library)
    picks = sorted({start + rng.randrange(size) for start, size in
                    (rng.choice(candidates) for _ in range(PICKS))})
    expected = addr2line_chains(described, picks)
    inlined = 0
    for address in picks:
        found = table.frames(address) or ()
        chain = [(name_, line) for name_, _, line in found]
        theirs = expected[address]
        if not found:
            assert theirs[0][1] == 0, (name, hex(address), theirs)
            continue
        assert len(chain) == len(theirs), (name, hex(address), chain, theirs)
        assert [line for _, line in chain] == [line for _, line in theirs], (name, hex(address),
                                                                           chain, theirs)
        assert [n for n, _ in chain[:-1]] == [n for n, _ in theirs[:-1]], (name, hex(address),
                                                                          chain, theirs)
        assert chain[-1][0] is None
        inlined += len(chain) > 1
    assert inlined >= PICKS * 0.05, (name, inlined)


def test_a_native_frames_source_is_kept_and_checked_by_the_codec():
    """Written only where a chunk has a frame with one (a source naming no string is refused:
    formats/golden/invalid/frame-source-undefined.spy)."""
    for source in ("", "/src/Objects/listobject.c"):
        out = io.BytesIO()
        writer = spyformat.SpyWriter(out)
        interned = spyformat.Interner(writer)
        writer.write_header({"pid": 1, "interval_ns": 1_000_000, "start_mono_ns": 0})
        frame = interned.frame_id("/lib/libpython3.12.so", "list_sort_impl", "list_sort_impl",
                                  2360 if source else 0, -1, spyformat.FrameKind.NATIVE, source)
        writer.sample(0, 1, 1, interned.stack_id((frame,)), 0, 0, 0)
        writer.close({})
        dumped = io.StringIO()
        spyformat.dump(io.BytesIO(out.getvalue()), dumped)
        assert ("'source'" in dumped.getvalue()) == bool(source), dumped.getvalue()
        data = spyformat.read_recording(io.BytesIO(out.getvalue()))
        got = data.frames["source"][0]
        assert (data.strings[got - 1] if got else "") == source


@pytest.mark.parametrize("section", [".debug_line", ".debug_aranges", ".debug_info",
                                     ".debug_abbrev", ".note.gnu.build-id"])
def test_a_damaged_library_gives_no_lines_and_no_error(tmp_path, section):
    """A library's file is the target's: damaged sections leave its frames without lines (or
    with whatever lines still decode), never an exception in the recorder."""
    found = [files for files in library_files() if files[0].startswith("zlibmodule")]
    if not found:
        pytest.skip("no CPython 3.13 with its zlib module, built with line information")
    library = found[0][1]
    with open(library, "rb") as f:
        data = bytearray(f.read())
        where = ELFFile(f).get_section_by_name(section)
    if where is None:
        pytest.skip("%s has no %s" % (library, section))
    rng = random.Random(section)
    start, size = where["sh_offset"], where["sh_size"]
    for _ in range(max(1, size // 16)):
        data[start + rng.randrange(size)] = rng.randrange(256)
    damaged = tmp_path / "damaged.so"
    damaged.write_bytes(bytes(data))
    image = load_elf(str(damaged))
    with open(damaged, "rb") as f:
        assert debug_file(ELFFile(f), "/", str(damaged)) is None
    table = line_table(image, None)
    for start_address, size_of in functions(str(damaged)):
        place = table.line(start_address + size_of // 2)
        assert place is None or (isinstance(place[0], str) and place[1] > 0)


def _anonymous_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))


def test_a_librarys_debug_sections_are_read_in_place_not_copied():
    """A library built with debug information carries tens of megabytes of it: mapped, not
    copied into the recorder's memory (pyelftools alone copies every section it reads)."""
    found = [files for files in library_files() if files[0].startswith("libpython")]
    if not found:
        pytest.skip("no pyenv CPython 3.8 or 3.12 with its shared library")
    library = found[-1][1]
    with open(library, "rb") as f:
        sizes = [s["sh_size"] for s in ELFFile(f).iter_sections()
                 if s.name.startswith(".debug_") and not s["sh_flags"] & SH_FLAGS.SHF_COMPRESSED]
    if sum(sizes) < 8 << 20:
        pytest.skip("%s has %d bytes of uncompressed debug sections" % (library, sum(sizes)))
    before = _anonymous_bytes()
    image = ElfImage(library)  # (not load_elf's: another test may have read it already)
    table = line_table(image, None)
    start, size = max(functions(library), key=lambda f: f[1])
    place = table.line(start + size // 2)
    grown = _anonymous_bytes() - before
    assert place is not None and place[1] > 0
    assert grown < sum(sizes) // 4, "%d bytes more for %d bytes of debug sections" % (grown, sum(sizes))
