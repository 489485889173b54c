"""Imports point one way (docs/architecture.md): no module of comfytest imports, directly or
through others, a module that imports it back — function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "comfytest"


def imports_of(path: Path, modules: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("comfytest."):
                found.add(node.module.split(".")[1])
            elif node.module == "comfytest":
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("comfytest.")}
    return found & modules


def test_no_import_cycles() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {p.stem: imports_of(p, modules) - {p.stem} for p in PACKAGE.glob("*.py")}
    cycles = []
    for start in sorted(graph):
        seen: dict[str, str | None] = {}  # module -> the module it was reached from
        frontier = [(dep, start) for dep in graph[start]]
        while frontier:
            node, parent = frontier.pop()
            if node in seen:
                continue
            seen[node] = parent
            frontier += [(dep, node) for dep in graph[node]]
        if start in seen:  # start reaches itself: walk the way back
            path, node = [start], seen[start]
            while node is not None and node != start and len(path) < len(graph):
                path.append(node)
                node = seen.get(node)
            cycles.append(" → ".join([start, *reversed(path[1:]), start]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles))[:10])


def test_only_the_plugin_layer_imports_pytest() -> None:
    importers = sorted(
        p.stem for p in PACKAGE.glob("*.py")
        if any(isinstance(n, ast.Import) and any(a.name == "pytest" for a in n.names)
               for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))
    )
    assert importers == ["collection", "plugin"]
