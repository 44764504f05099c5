"""The package's modules form layers: no import cycle, lazy imports included."""

from __future__ import annotations

import ast

from module_imports import graph, import_statements


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    """No module imports, directly or through others, a module that imports it back."""
    assert cycles(graph()) == []


def test_the_walk_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    """The check itself: an import inside a function counts, one under TYPE_CHECKING does not."""
    edges = graph()
    assert "statesaga.compiler" in edges["statesaga.durable.drive"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import hidden\n"
        "def f():\n    from . import lazy\n"
    )
    found = [
        (node.names[0].name, lazy)
        for node, lazy in import_statements(tree)
        if isinstance(node, ast.ImportFrom) and node.module is None
    ]
    assert found == [("lazy", True)]


def test_the_compiler_does_not_reach_render() -> None:
    """The compiler is pure data: render imports it, and nothing it imports, even lazily,
    leads back to render."""
    edges = graph()
    reached: set[str] = set()
    todo = [m for m in edges if m == "statesaga.compiler" or m.startswith("statesaga.compiler.")]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += edges[module]
    assert sorted(m for m in reached if m.startswith("statesaga.render")) == []
    assert "statesaga.compiler" in edges["statesaga.render"]
