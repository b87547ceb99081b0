"""The package's rooms explain themselves: no import circle among vision_lab's modules, no module
over MAX_LINES lines, no module named like a standard-library one.

Imports are read from the source with `ast`, not by importing anything. Every import statement in
a file counts, wherever it is written: at the top, inside a function (an import put there to break
a circle still leaves the two modules needing each other), or under `if TYPE_CHECKING:`.
Relative imports are resolved against the file's package; `from . import x` points at module `x`
when there is one, else at the package itself. Importing `a.b` also runs `a/__init__.py`, but that
edge is not counted: a package's `__init__` that builds from its own modules (ui/__init__.py builds
the app from its tabs) is not a circle between rooms. Only imports of vision_lab's own modules
count; `importlib.import_module("...")` strings are not followed.

Each check is first run on a small made-up package (tmp_path) that breaks it, so each can fail.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "vision_lab"
MAX_LINES = 600


def modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module in the package (a package is its __init__.py)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(name: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """The package's own modules that module `name` imports -> the line of the first such import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = name if _is_package(path) else name.rpartition(".")[0]   # the package `.` means
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        # `import a.b.c` needs a.b.c; a name that is not a module is an attribute of its module.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # one dot: this package; each further dot: one package up
                base = here.split(".")[:len(here.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in known else source, node.lineno)
    return found


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    known = modules(package)
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The import circles: each strongly connected group of modules (two or more), as one path
    round it that starts and ends at its first module."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:   # Tarjan's algorithm; the graph is small, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_round(group, graph) for group in sorted(groups)]


def _path_round(group: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    return paths[node] + [start]
                if target in members and target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    return group


def describe(path: list[str], graph: dict[str, dict[str, int]], package: Path) -> str:
    known = modules(package)
    steps = [f"{a} (line {graph[a][b]} of {known[a].relative_to(package.parent)})"
             for a, b in zip(path, path[1:])]
    return " -> ".join(steps + [path[-1]])


def long_modules(package: Path, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    out = []
    for path in sorted(package.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            out.append((str(path.relative_to(package.parent)), lines))
    return out


def standard_library_names(package: Path) -> list[str]:
    """Modules and packages in the package whose own name is a standard-library module's."""
    clashes = []
    for path in sorted(package.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        if path.suffix == ".py" and not path.stem.startswith("__"):
            name = path.stem
        elif path.is_dir() and (path / "__init__.py").is_file():
            name = path.name
        else:
            continue
        if name in sys.stdlib_module_names:
            clashes.append(str(path.relative_to(package.parent)))
    return clashes


# ---- the checks on a made-up package that breaks each rule -------------------------------------

def make_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return package


def test_the_checks_find_what_they_look_for(tmp_path):
    package = make_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": "def thing():\n    from . import a  # a function-level import still counts\n",
        "c.py": "from .sub.d import other\n",
        "sub/__init__.py": "",
        "sub/d.py": "import pkg.c\nother = 1\n",
        "e.py": "from . import a\n",           # depends on a circle, is not in one
        "inspect.py": "\n" * 700,
        "queue/__init__.py": "",
    })
    graph = import_graph(package)
    assert graph["pkg.b"] == {"pkg.a": 2}
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.c", "pkg.sub.d", "pkg.c"]]
    assert "line 2 of pkg/b.py" in describe(["pkg.a", "pkg.b", "pkg.a"], graph, package)
    assert long_modules(package) == [("pkg/inspect.py", 700)]
    assert standard_library_names(package) == ["pkg/inspect.py", "pkg/queue"]


def test_relative_imports_resolve_against_their_package(tmp_path):
    package = make_package(tmp_path, {
        "__init__.py": "from .ui import build\n",
        "core.py": "",
        "ui/__init__.py": "from .. import core\nfrom .tab import layout\n",
        "ui/tab.py": "from ..core import x\nfrom . import helper\nlayout = 1\n",
        "ui/helper.py": "from .. import ui\n",    # imports its own package: a circle with it
    })
    graph = import_graph(package)
    assert set(graph["pkg"]) == {"pkg.ui"}
    assert set(graph["pkg.ui"]) == {"pkg.core", "pkg.ui.tab"}
    assert set(graph["pkg.ui.tab"]) == {"pkg.core", "pkg.ui.helper"}
    assert circles(graph) == [["pkg.ui", "pkg.ui.tab", "pkg.ui.helper", "pkg.ui"]]


# ---- the checks on vision_lab ---------------------------------------------------------------------

def test_no_import_circles():
    graph = import_graph(PACKAGE)
    found = circles(graph)
    assert not found, "import circles (module-level and function-level imports):\n" + "\n".join(
        describe(path, graph, PACKAGE) for path in found)


def test_no_module_over_the_limit():
    found = long_modules(PACKAGE)
    assert not found, f"modules over {MAX_LINES} lines:\n" + "\n".join(
        f"{path}: {lines} lines" for path, lines in found)


def test_no_module_named_like_the_standard_library():
    found = standard_library_names(PACKAGE)
    assert not found, "named like a standard-library module (confusing beside it):\n" + "\n".join(found)
