"""The import graph: no cycles in spyrec/, spyanalyze/ or bench/ (the arrows read recorder ->
format <- analyser, bench above both), and an analyst's install needs neither the recorder's
ELF reader nor the command-line library to load recordings."""

import ast
import os
import subprocess
import sys

import pytest

#: Times nothing and runs no target whose timing matters: may run beside other tests.
pytestmark = pytest.mark.untimed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules():
    """{module name: file}: the packages' modules, and bench's (its top level: bench/targets
    holds programs to measure, not modules)."""
    found = {}
    for package in ("spyrec", "spyformat", "spyanalyze"):
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                    found[module[:-len(".__init__")] if module.endswith(".__init__")
                          else module] = path
    for name in os.listdir(os.path.join(REPO, "bench")):
        if name.endswith(".py"):
            found["bench" if name == "__init__.py" else "bench." + name[:-3]] = \
                os.path.join(REPO, "bench", name)
    return found


def _imports(module, path, modules):
    """The modules of ``modules`` that ``module`` imports anywhere in its file (imports inside
    functions count: they close a cycle as surely, only later)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    edges.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                if base + "." + alias.name in modules:
                    edges.add(base + "." + alias.name)
                elif base in modules:
                    edges.add(base)
    edges.discard(module)
    return edges


def _cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back():
    modules = _modules()
    assert {"spyanalyze.recording", "bench", "bench.common", "bench.bench_record"} <= set(modules)
    graph = {module: _imports(module, path, modules) for module, path in modules.items()}
    assert "spyanalyze.views" in graph["spyanalyze.recording"]  # the scan sees imports
    assert "bench.common" in graph["bench.bench_record"]
    assert _cycles(graph) == []


def test_bench_is_a_package_run_with_dash_m():
    """Every bench module imports its siblings through the package (``python -m bench.NAME``
    from the repository root), so none edits ``sys.path`` or imports a sibling by bare name."""
    modules = _modules()
    siblings = {name.rpartition(".")[2] for name in modules if name.startswith("bench.")}
    wrong = []
    for module, path in modules.items():
        if module == "bench" or module.startswith("bench."):
            tree = ast.parse(open(path, encoding="utf-8").read(), path)
            wrong += ["%s edits sys.path" % module for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr == "path"
                      and isinstance(node.value, ast.Name) and node.value.id == "sys"]
            wrong += ["%s imports %s bare" % (module, alias.name) for node in ast.walk(tree)
                      if isinstance(node, ast.Import) for alias in node.names
                      if alias.name in siblings]
            wrong += ["%s imports from %s bare" % (module, node.module) for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom) and not node.level
                      and node.module in siblings]
    assert wrong == []


def test_the_arrows_read_recorder_to_format_from_analyser():
    """The codec imports neither side, and neither side imports the other."""
    modules = _modules()
    forbidden = {"spyformat": ("spyrec", "spyanalyze"), "spyanalyze": ("spyrec",),
                 "spyrec": ("spyanalyze",)}
    wrong = []
    for module, path in modules.items():
        banned = forbidden.get(module.split(".")[0], ())
        wrong += ["%s -> %s" % (module, target) for target in _imports(module, path, modules)
                  if target.split(".")[0] in banned]
    assert "spyformat" in _imports("spyrec.sampler", modules["spyrec.sampler"], modules)
    assert wrong == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_recordings_load_without_the_recorders_dependencies():
    """``spyanalyze`` and the format codec import, and read a recording, in an interpreter where
    pyelftools, click and the recorder's own package cannot be imported."""
    sample = os.path.join(REPO, "formats", "golden", "v1", "complete.spy")
    script = (
        "import sys\n"
        "sys.modules['elftools'] = None\n"
        "sys.modules['click'] = None\n"
        "sys.modules['spyrec'] = None\n"
        "import spyanalyze, spyformat\n"
        "rec = spyanalyze.load(sys.argv[1])\n"
        "assert 'elftools' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
        "print(len(rec.samples))\n")
    result = subprocess.run([sys.executable, "-c", script, sample], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0
