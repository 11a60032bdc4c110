"""Print CPython's own offset -> line/column answers, for tests/test_linetable.py.

Run under a *target* interpreter (3.8+): ``python linetable_dump.py``.  Compiles a few stdlib
modules plus synthetic sources (lines above 65,535, big and negative line jumps, long jumps in
the bytecode), walks every code object, and prints one JSON document:

``{"version": [3, 11], "codes": [{"name", "firstlineno", "table" (hex of co_lnotab /
co_linetable), "units", "lines", "columns"}]}`` where ``lines[i]`` / ``columns[i]`` are the
answers for the code unit at byte offset ``2*i``:

* 3.11+: ``co_positions()`` (line None -> 0, column None -> -1);
* 3.10: ``co_lines()`` (line None -> 0), columns -1;
* <=3.9: ``PyCode_Addr2Line`` via ctypes (what frame.f_lineno is computed with), columns -1.
"""

import ctypes
import importlib
import json
import sys
import types

MODULES = ["dis", "inspect", "typing", "argparse", "json.decoder", "textwrap", "ast", "enum",
           "functools", "dataclasses", "asyncio.base_events", "email.message", "collections",
           "threading", "tokenize", "pathlib"]

SYNTHETIC = {
    "<huge offset>": "\n" * 70000 + "def far(a):\n    b = a + 1\n\n\n    return b * 2\n",
    "<big jumps>": (
        "def jumps(x):\n"
        "    y = 0\n" + "\n" * 300 +
        "    y += x\n" + "\n" * 70000 +
        "    if x:\n" + "".join("        y += %d\n" % i for i in range(200)) +
        "    return (y +\n"
        "            x)\n"
    ),
    "<backwards>": (
        "@staticmethod\n"
        "def deco(a,\n"
        "         b):\n"
        "    return {\n"
        "        'k': a,\n"
        "        'v': [b,\n"
        "              a],\n"
        "    }\n"
        "result = [x for x in range(3)\n"
        "          if x]\n"
        "lam = lambda q: (q\n"
        "                 + 1)\n"
        "for i in range(2):\n"
        "    try:\n"
        "        pass\n"
        "    except Exception as e:\n"
        "        raise\n"
        "    finally:\n"
        "        result.append(i)\n"
    ),
}


def code_objects(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            for inner in code_objects(const):
                yield inner


def sources():
    for name in MODULES:
        try:
            module = importlib.import_module(name)
            path = module.__file__
            with open(path, encoding="utf-8") as f:
                yield path, f.read()
        except Exception:
            continue
    for path, text in SYNTHETIC.items():
        yield path, text


def expected(code):
    units = len(code.co_code) // 2
    if sys.version_info >= (3, 11):
        positions = list(code.co_positions())
        lines = [p[0] or 0 for p in positions]
        columns = [-1 if p[2] is None else p[2] for p in positions]
        return units, lines, columns
    if sys.version_info >= (3, 10):
        lines = [0] * units
        for start, end, line in code.co_lines():
            for i in range(start // 2, end // 2):
                lines[i] = line or 0
        return units, lines, [-1] * units
    addr2line = ctypes.pythonapi.PyCode_Addr2Line
    addr2line.argtypes = [ctypes.py_object, ctypes.c_int]
    addr2line.restype = ctypes.c_int
    return units, [addr2line(code, 2 * i) for i in range(units)], [-1] * units


def main():
    out = []
    for path, text in sources():
        for code in code_objects(compile(text, path, "exec")):
            table = code.co_linetable if sys.version_info >= (3, 10) else code.co_lnotab
            units, lines, columns = expected(code)
            out.append({"name": code.co_name, "file": path, "firstlineno": code.co_firstlineno,
                        "table": table.hex(), "units": units, "lines": lines,
                        "columns": columns})
    json.dump({"version": list(sys.version_info[:2]), "codes": out}, sys.stdout)


if __name__ == "__main__":
    main()
