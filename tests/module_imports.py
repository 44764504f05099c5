"""Which of the package's modules each module imports, read from the source (nothing is run).

Imports inside functions count (they run at first use, and can close a cycle as well as any);
imports under ``if TYPE_CHECKING:`` do not (they never run). Shared by ``test_layers.py``, which
checks the graph has no cycle, and ``module_graph.py``, which draws it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import statesaga

PACKAGE = Path(statesaga.__file__).parent


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """The dotted name of the module at ``path`` (a package is named by its ``__init__.py``)."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of ``package``, by dotted name, in name order."""
    found = {module_name(p, package): p for p in package.rglob("*.py")}
    return dict(sorted(found.items()))


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_statements(
    tree: ast.AST, *, lazy: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, with whether it sits in a function (runs only when called);
    in functions too, except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                yield from import_statements(child, lazy=lazy)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, lazy
        inside = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from import_statements(node, lazy=inside)


def imports(name: str, path: Path, known: set[str]) -> dict[str, bool]:
    """The package's modules ``name`` imports, each with whether every import of it is lazy
    (inside a function)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, bool] = {}
    for node, lazy in import_statements(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            subs = (f"{target}.{alias.name}" for alias in node.names)
            targets = [sub if sub in known else target for sub in subs]
        for target in targets:
            if target in known and target != name:
                found[target] = found.get(target, True) and lazy
    return dict(sorted(found.items()))


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, bool]]:
    """Every module, with the package's modules it imports and whether only lazily."""
    found = modules(package)
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Every module, with the package's modules it imports."""
    return {name: set(targets) for name, targets in import_graph(package).items()}
