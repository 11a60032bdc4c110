"""Where a frame's file lies, told alike whatever machine, checkout or virtualenv recorded it."""

import os
import re

_LIBRARY = re.compile(r"(?:^|/)(?:site|dist)-packages/")
_STDLIB = re.compile(r"(?:^|/)(?:lib(?:64)?/(?:pypy|python)\d+(?:\.\d+)?[a-z]*|Lib)/")


def module_paths(files, root=None):
    """Map absolute source paths to module-relative paths and a kind, so recordings made on
    other machines, in other checkouts or virtualenvs line up.  The rule, in order:

    1. ``<frozen ...>``, ``<string>`` and other pseudo-files stay as they are (frozen modules
       are kind ``stdlib``, the others ``other``);
    2. everything up to and including the last ``site-packages/`` or ``dist-packages/`` is
       dropped (kind ``site-packages``): ``/venv/lib/python3.11/site-packages/numpy/core/x.py``
       becomes ``numpy/core/x.py``;
    3. everything up to and including the standard library directory (``lib/pythonX.Y/``,
       ``lib64/...``, ``Lib/`` on Windows) is dropped (kind ``stdlib``): ``json/decoder.py``;
    4. any other file (kind ``user``) is made relative to ``root`` when it lies under it; the
       root is the target's working directory when the recording names one (a ``cwd`` field in
       the header or PROCESS record) and the file lies under it, else the common directory of
       all the recording's other user files (so a single script reads as its base name);
    5. a relative path is kept, normalised.

    Returns two lists (module paths, kinds) parallel to ``files``.
    """
    normalised = [f.replace("\\", "/") for f in files]
    if root and root.rstrip("/") == "":
        root = None                      # a service started in / says nothing about its code

    def under(path, directory):
        return (path + "/").startswith(directory.rstrip("/") + "/")
    user_dirs = [os.path.dirname(f) for f in normalised
                 if f.startswith("/") and not _LIBRARY.search(f) and not _STDLIB.search(f)
                 and not (root and under(f, root))]
    common = None
    if user_dirs:
        try:
            common = os.path.commonpath(user_dirs)
        except ValueError:
            common = None
    modules, kinds = [], []
    for path in normalised:
        if path.startswith("<"):
            modules.append(path)
            kinds.append("stdlib" if path.startswith("<frozen") else "other")
            continue
        library = list(_LIBRARY.finditer(path))
        if library:
            modules.append(path[library[-1].end():])
            kinds.append("site-packages")
            continue
        stdlib = list(_STDLIB.finditer(path))
        if stdlib:
            modules.append(path[stdlib[-1].end():])
            kinds.append("stdlib")
            continue
        if root and path.startswith("/") and under(path, root):
            path = os.path.relpath(path, root)
        elif common and path.startswith("/") and under(path, common):
            path = os.path.relpath(path, common)
        elif not path.startswith("/"):
            path = os.path.normpath(path)
        modules.append(path.replace("\\", "/"))
        kinds.append("user")
    return modules, kinds
