"""sphinx-build of a generated project (HTML, autodoc, highlighted code), timing its own parts.

    python sphinx_timed.py WORKDIR [PAGES=40]

Writes PAGES reStructuredText pages into WORKDIR/src (sections, lists, cross-references, code
blocks of standard-library sources, and an ``automodule`` of a standard-library module each),
then runs ``sphinx.cmd.build.main`` on them from scratch (``-E``).  At exit it prints to stderr,
as JSON, the share of ``timed_build``'s wall time spent in a few of Sphinx's and docutils' functions
(their outermost calls), measured with ``time.perf_counter`` around them, to compare with what
profilers attribute to them.
"""

import functools
import inspect
import json
import os
import sys
import textwrap
import time

from docutils.parsers.rst import states
from sphinx.builders import Builder
from sphinx.cmd import build
from sphinx.ext.autodoc import _directive

#: The functions timed, as (class, method); the JSON names them ``Class.method``.
TIMED = ((Builder, "read"), (Builder, "write"), (_directive.AutodocDirective, "run"),
         (states.RSTState, "nested_list_parse"))
MODULES = ("json.decoder", "email.message", "argparse", "collections", "http.client", "logging")

spent = {}


def timed(cls, name):
    function = getattr(cls, name)
    key = "%s.%s" % (cls.__qualname__, name)
    spent[key] = 0.0
    depth = [0]

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        depth[0] += 1
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            depth[0] -= 1
            if not depth[0]:
                spent[key] += time.perf_counter() - start
    setattr(cls, name, wrapper)


def write_project(src, pages):
    import importlib
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "conf.py"), "w") as f:
        f.write('project = "timed"\nextensions = ["sphinx.ext.autodoc"]\n')
    index = ["Index\n=====\n\n.. toctree::\n\n"]
    for page in range(pages):
        module = MODULES[page % len(MODULES)]
        source = inspect.getsource(importlib.import_module(module))[:6000]
        body = ["Page %d\n==========\n\n" % page]
        for section in range(8):
            body.append(".. _sec%d_%d:\n\nSection %d.%d\n----------------\n\nSome *text* with "
                        "``code`` and a :ref:`link <sec%d_%d>`.\n\n"
                        % (page, section, page, section, page, (section + 1) % 8))
            body.append(".. code-block:: python\n\n"
                        + textwrap.indent(source[section * 700:(section + 1) * 700], "   ")
                        + "\n\n")
            body.append("\n".join("* item %d with **bold** text" % k for k in range(10)) + "\n\n")
        body.append(".. automodule:: %s\n   :members:\n" % module)
        with open(os.path.join(src, "page%d.rst" % page), "w") as f:
            f.write("".join(body))
        index.append("   page%d\n" % page)
    with open(os.path.join(src, "index.rst"), "w") as f:
        f.write("".join(index))


def timed_build(work):
    build.main(["-q", "-E", "-b", "html", os.path.join(work, "src"), os.path.join(work, "out")])


def main():
    work = sys.argv[1]
    pages = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    write_project(os.path.join(work, "src"), pages)
    for cls, name in TIMED:
        timed(cls, name)
    start = time.perf_counter()
    timed_build(work)
    total = time.perf_counter() - start
    print(json.dumps({key: value / total for key, value in spent.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
