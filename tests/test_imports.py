"""The package's import graph: no loops, and every import goes down the layers below (or within its own layer).

Every ``import scmdm…`` / ``from scmdm… import …`` statement of every module is read with ``ast`` — at module level
and inside functions alike, so that a lazy import cannot hide a loop. ``from scmdm.a import b`` is an edge to the
module ``scmdm.a.b`` when that is a module, else to ``scmdm.a``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: bottom to top; a module may import from its own layer and the layers below it (a package counts as one name)
LAYERS = [
    {"errors", "cache", "files", "outputs", "plaindata", "schedules", "categorical", "tracks", "options", "profiling"},
    {"diffusion", "tokenizer", "templates", "data", "evaluation", "distributed"},
    {"selfcond"},
    {"model", "flops"},
    {"denoiser"},
    {"sampling", "objectives", "domains"},
    {"config"},
    {"mdlm"},
    {"checkpoint"},
    {"training"},
    {"workflows"},
    {"cli", "__main__", "__init__"},
]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in (SRC / "scmdm").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """module → the scmdm modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.split(".")[0] == "scmdm"}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "scmdm":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    edges.add(full if full in modules else node.module)
        graph[name] = {e for e in edges if e != name}
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "scmdm.model.transformer" in graph["scmdm.denoiser"] or "scmdm.model" in graph["scmdm.denoiser"]
    assert "scmdm.objectives" in graph["scmdm.training.trainer"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the search finds a loop
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_loops() -> None:
    assert _cycle(import_graph()) is None


def test_imports_go_down_the_layers() -> None:
    layer = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
    graph = import_graph()
    rooms = {_room(m) for m in graph}
    assert rooms <= set(layer), f"modules in no layer: {sorted(rooms - set(layer))}"
    upward = [(m, e) for m, edges in graph.items() for e in edges if layer[_room(e)] > layer[_room(m)]]
    assert not upward, f"imports that go up a layer: {upward}"
