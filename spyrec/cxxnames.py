"""C++ names as py-spy shows them, demangled by the C++ runtime's own ``__cxa_demangle`` where
the machine has one: qualified, with template arguments, without return type, parameters or
clone suffixes.  Shared by symbol names (spyrec.elfunwind) and the names of inlined functions
(spyrec.elflines)."""

import ctypes
import ctypes.util
import re
from typing import Any, List


def _cxa_demangle():
    path = ctypes.util.find_library("stdc++")
    if path is None:
        return None
    try:
        function = ctypes.CDLL(path).__cxa_demangle
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_void_p
    function.argtypes = (ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.POINTER(ctypes.c_int))
    return function


_demangler: List[Any] = []  # [the C++ runtime's __cxa_demangle, or None], once looked for
_libc_free = ctypes.CDLL(None).free
_libc_free.argtypes = (ctypes.c_void_p,)


def demangle(name: str) -> str:
    """A C++ symbol's readable name, as py-spy shows it: qualified, with its template
    arguments, without its return type, parameters and clone suffixes (``_ZN4core3fooEv`` ->
    ``core::foo``); ``name`` itself when it is no C++ name."""
    full = demangle_whole(name)
    return function_name(full) if full is not name else name


#: What ends a C++ name just before a ``<`` or ``>`` that belongs to an operator's name.
_OPERATORS = ("operator", "operator<", "operator>", "operator-")


def function_name(signature: str) -> str:
    """The qualified name in a demangled C++ signature: ``void ns::f<int>(int*) const [clone
    .constprop.0]`` -> ``ns::f<int>``; the signature itself when it does not parse."""
    text = re.sub(r"(?: \[clone [^\]]*\])+$", "", signature)
    text = text.replace("(anonymous namespace)", "\0")
    depth, cut, start = 0, None, 0
    for i, char in enumerate(text):
        if char in "<>" and text[:i].endswith(_OPERATORS):
            continue  # operator<, operator<<, operator->, operator>=...
        if char in "<(":
            if char == "(" and depth == 0 and not text[:i].endswith("operator"):
                cut = i
                break
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == " " and depth == 0 and not text[:i].endswith("operator"):
            start = i + 1  # what came before was the return type
        if depth < 0:
            return signature
    name = text[start:cut].replace("\0", "(anonymous namespace)")
    return name or signature


def demangle_whole(name: str) -> str:
    """A C++ symbol's whole demangled signature (``core::foo()``), else ``name`` itself."""
    if not name.startswith("_Z"):
        return name
    if not _demangler:
        _demangler.append(_cxa_demangle())
    function = _demangler[0]
    if function is None:
        return name
    status = ctypes.c_int(0)
    result = function(name.encode("utf-8", "replace"), None, None, ctypes.byref(status))
    if not result:
        return name
    try:
        return ctypes.string_at(result).decode("utf-8", "replace")
    finally:
        _libc_free(result)
