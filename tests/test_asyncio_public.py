"""statesaga uses asyncio's public API only: no private name of asyncio anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import statesaga

PACKAGE = Path(statesaga.__file__).parent


def private_uses(source: str) -> list[str]:
    """Each private asyncio name ``source`` imports or reads, as ``line: name``."""
    tree = ast.parse(source)
    aliases: set[str] = set()  # local names bound to asyncio or one of its modules
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "_asyncio" or alias.name.startswith("asyncio._"):
                    found.append(f"{node.lineno}: import {alias.name}")
                elif alias.name.split(".")[0] == "asyncio":
                    aliases.add(alias.asname or "asyncio")
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            top = node.module.split(".")[0]
            if top == "_asyncio" or (top == "asyncio" and "._" in f".{node.module}"):
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif top == "asyncio":
                for alias in node.names:
                    if alias.name.startswith("_"):
                        found.append(f"{node.lineno}: from {node.module} import {alias.name}")
                    else:
                        aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_uses_a_private_name_of_asyncio() -> None:
    """Neither ``asyncio._x``, ``asyncio.tasks._x``, ``from asyncio import _x`` nor ``_asyncio``."""
    offenders = {
        path.relative_to(PACKAGE).as_posix(): uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if (uses := private_uses(path.read_text(encoding="utf-8")))
    }
    assert not offenders, offenders


def test_the_check_sees_each_kind_of_private_use() -> None:
    """The check itself finds what it looks for (so the test above can fail)."""
    source = "\n".join(
        [
            "import asyncio",
            "import asyncio.tasks as tasks",
            "from asyncio import events",
            "from asyncio import _get_running_loop",
            "import _asyncio",
            "from asyncio.tasks import _enter_task",
            "asyncio._leave_task(loop, task)",
            "tasks._register_task(task)",
            "events._get_event_loop()",
            "asyncio.get_running_loop()",
        ]
    )
    assert [use.split(":")[0] for use in private_uses(source)] == ["4", "5", "6", "7", "8", "9"]
