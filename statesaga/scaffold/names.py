"""Names for a new saga and its steps, checked before anything is rendered.

A name must name a folder, a module and a function, and must not hide a module or a builtin
that the generated code needs.
"""

from __future__ import annotations

import builtins
import importlib.metadata
import keyword
import re
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import PurePosixPath, PureWindowsPath

from ..definition import Step
from ..errors import ScaffoldError

#: The steps of a new saga when none are named: an order, reserved, paid for and shipped.
DEFAULT_STEPS = ("reserve_stock", "charge_payment", "ship_order")

#: Longest saga or step name: longer ones would no longer fit the generated code's lines.
MAX_NAME_LENGTH = 40

_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def step_names(steps: str | Sequence[str] | None) -> list[str]:
    """The step names ``steps`` gives (``DEFAULT_STEPS`` if ``None``), each one checked.

    Raises:
        ScaffoldError: A name is empty, unusable, or listed twice.
    """
    names = _split(steps)
    for step in names:
        _check_step_name(step)
    if len(set(names)) != len(names):
        twice = sorted({s for s in names if names.count(s) > 1})
        raise ScaffoldError(
            f"step {twice[0]!r} is listed more than once: give every step its own name"
        )
    return names


def _split(steps: str | Sequence[str] | None) -> list[str]:
    if steps is None:
        return list(DEFAULT_STEPS)
    names = [s.strip() for s in steps.split(",")] if isinstance(steps, str) else list(steps)
    if not names or names == [""]:
        raise ScaffoldError("no steps given: name at least one, such as --steps reserve,charge")
    for index, step in enumerate(names, start=1):
        if not step:
            raise ScaffoldError(
                f"step {index} of {len(names)} has an empty name: separate step names with "
                "single commas, such as --steps reserve,charge,ship"
            )
    return names


def _suggest(name: str) -> str:
    """A snake_case spelling of ``name``, or an empty string when there is none."""
    # Accents and full-width letters fold to ASCII first: 'ordér' suggests 'order', not 'ord_r'.
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", folded)
    words = re.findall(r"[a-z0-9]+", spaced.lower())
    suggestion = "_".join(words).lstrip("0123456789_")
    return suggestion if _SNAKE.fullmatch(suggestion) else ""


def _check_name(name: str, what: str) -> None:
    """Refuse a name that cannot name a folder, a module and a function; ``what`` says whose."""
    if not name:
        raise ScaffoldError(f"{what} is empty: use a snake_case name, such as 'order_saga'")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute():
        raise ScaffoldError(
            f"{what} {name!r} is an absolute path: use a plain name (choose the parent "
            "folder with --dir)"
        )
    if ".." in re.split(r"[/\\]", name):
        raise ScaffoldError(
            f"{what} {name!r} points outside the target folder: use a plain name (choose the "
            "parent folder with --dir)"
        )
    if "/" in name or "\\" in name:
        raise ScaffoldError(
            f"{what} {name!r} contains a path separator: use a plain name (choose the parent "
            "folder with --dir)"
        )
    if not _SNAKE.fullmatch(name):
        suggestion = _suggest(name)
        example = f" (such as {suggestion!r})" if suggestion else ""
        raise ScaffoldError(
            f"{what} {name!r} is not snake_case: use lowercase letters, digits and single "
            f"underscores, starting with a letter{example}"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(
            f"{what} {name!r} has {len(name)} characters: use at most {MAX_NAME_LENGTH}, so "
            "that the generated code stays readable"
        )
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{what} {name!r} is a Python keyword: choose another name")


def check_saga_name(name: str) -> None:
    """Refuse a saga name that cannot name the package, or that would hide another module.

    Raises:
        ScaffoldError: Why the name is unusable, with a usable one suggested where possible.
    """
    _check_name(name, "saga name")
    if name == "conftest" or name.startswith("test"):
        # pytest collects modules named test* and classes named Test*: the generated package
        # and its saga class would be taken for tests.
        raise ScaffoldError(
            f"saga name {name!r} would be taken for a test by pytest (it collects modules "
            "named test*, classes named Test* and conftest): choose a name that does not "
            "start with 'test', such as 'orders'"
        )
    # Run from the folder above it, the package comes first on sys.path and would hide these.
    if name in sys.stdlib_module_names:
        hidden = "a standard library module"
    elif name in (installed := _installed_modules()):
        hidden = f"a module installed by {installed[name]}"
    else:
        return
    raise ScaffoldError(
        f"saga name {name!r} is the name of {hidden}, which the generated package would hide: "
        f"choose another name, such as '{name}_saga'"
    )


def _installed_modules() -> dict[str, str]:
    """Top-level modules of the installed distributions, each with a distribution's name."""
    found = {"statesaga": "statesaga"}
    for module, distributions in importlib.metadata.packages_distributions().items():
        found.setdefault(module, distributions[0])
    return found


async def _no_op(ctx: object) -> None:
    """Stands in for an action while the library checks a step name."""


def _check_step_name(name: str) -> None:
    _check_name(name, "step name")
    for problem in Step(name, _no_op).problems():  # the library's own rules for step names
        hint = "" if ":" in problem else ": choose another name"
        raise ScaffoldError(f"step {problem}{hint}")
    if hasattr(builtins, name):
        raise ScaffoldError(
            f"step name {name!r} is a Python builtin, which the generated function would "
            f"hide: choose a more specific name, such as '{name}_order'"
        )
