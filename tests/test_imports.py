"""The package's import graph: no circles, and no private names across package lines.

Read from the source (every import, including lazy ones inside functions and
those under ``TYPE_CHECKING``), so a circle that only laziness keeps from
breaking still fails here.

Rules:

- a private name (``_name``) is never imported from another module;
- a private module (``pkg/_name.py``) is imported only by modules inside ``pkg``;
- no module depends, directly or through others, on itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "pipeline"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports() -> dict[str, list[tuple[str, str | None]]]:
    """Per module, what it imports from the package: ``(module, name or None)``."""
    modules = _modules()
    found: dict[str, list[tuple[str, str | None]]] = {}
    for module, (path, is_package) in modules.items():
        edges = found.setdefault(module, [])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges += [(a.name, None) for a in node.names if a.name.startswith("pipeline")]
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(module, is_package, node)
                if target.split(".")[0] != "pipeline":
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.append((sub, None) if sub in modules else (target, alias.name))
    return found


def _private_owner(module: str) -> str | None:
    """The package a private module belongs to (``a.b`` for ``a.b._c.d``), else None."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_"):
            return ".".join(parts[:i])
    return None


def test_no_private_names_cross_modules():
    crossings = []
    for module, edges in _imports().items():
        for target, name in edges:
            if name is not None and name.startswith("_") and target != module:
                crossings.append(f"{module} imports {name} from {target}")
            owner = _private_owner(target)
            if owner is not None and not (module == owner or module.startswith(owner + ".")):
                crossings.append(f"{module} imports the private module {target}")
    assert not crossings, "\n".join(crossings)


def test_no_import_circles():
    graph = {m: sorted({t for t, _ in edges if t != m}) for m, edges in _imports().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    circles: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in graph.get(module, []):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target in graph and not state.get(target):
                visit(target)
        path.pop()
        state[module] = 2

    for module in graph:
        if not state.get(module):
            visit(module)
    assert not circles, "\n".join(circles)


def test_the_walk_sees_lazy_and_type_checking_imports():
    """A guard against a walk that sees nothing and so always passes."""
    edges = dict(_imports())
    assert ("pipeline.engines._ray", "RayEngine") in edges["pipeline.engines"]  # in a function
    assert ("pipeline.fences", "Fences") in edges["pipeline.report.html"]  # under TYPE_CHECKING
