"""Render ``templates/`` into a new saga folder that runs and passes its own tests.

Every name is checked before anything is rendered. The folder is rendered into a temporary
folder, its package is imported from there to draw the saga's diagram, and only then is it
moved into place: an error at any point leaves nothing behind.
"""

from __future__ import annotations

import builtins
import errno
import importlib.metadata
import importlib.resources
import importlib.util
import keyword
import os
import re
import shutil
import sys
import tempfile
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import attrs
import jinja2

from .definition import SagaDefinition, Step
from .errors import ScaffoldError as ScaffoldError
from .render import RenderError, mermaid_of, render

__all__ = [
    "DEFAULT_STEPS",
    "ScaffoldError",
    "Scaffolded",
    "new_saga",
    "template_dir",
    "template_variables",
]

#: The steps of a new saga when none are named: an order, reserved, paid for and shipped.
DEFAULT_STEPS = ("reserve_stock", "charge_payment", "ship_order")

#: Seconds of drawing after which ``new_saga`` reports (through ``progress``) that it is drawing.
NOTICE_AFTER = 0.5

#: Longest saga or step name: longer ones would no longer fit the generated code's lines.
MAX_NAME_LENGTH = 40

_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_TEMPLATE_SUFFIX = ".jinja"
_SKIPPED = frozenset({"__pycache__", ".git", ".DS_Store"})
# Both are drawn from the generated code, so templates of Python files cannot use them.
_DIAGRAM_VARIABLES = ("mermaid", "svg")


@attrs.frozen
class Scaffolded:
    """What ``new_saga`` wrote.

    Attributes:
        path: The saga's folder.
        files: The files written, relative to ``path`` (POSIX style), sorted.
        kept: Files that were already in the folder and are not generated (with ``force``).
        diagram_problem: Why no SVG diagram was drawn (Graphviz missing, say), or ``None``.
    """

    path: Path
    files: tuple[str, ...]
    kept: tuple[str, ...] = ()
    diagram_problem: str | None = None


def template_dir() -> Traversable:
    """The built-in templates: inside the installed package, or a checkout's ``templates/``."""
    packaged = importlib.resources.files("statesaga") / "_templates"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():  # an editable install: the templates are not copied into the package
        return checkout
    raise ScaffoldError("statesaga's built-in templates are missing: reinstall statesaga")


def new_saga(
    name: str,
    *,
    steps: str | Sequence[str] | None = None,
    directory: str | Path = ".",
    template: str | Path | None = None,
    force: bool = False,
    progress: Callable[[str], object] | None = None,
) -> Scaffolded:
    """Generate the saga folder ``directory/name`` from templates.

    Args:
        name: The saga's snake_case name: the folder, the package and (in CamelCase, ending in
            ``Saga``) the class.
        steps: Step names, as a sequence or a comma-separated string; ``DEFAULT_STEPS`` if
            ``None``.
        directory: The folder to create the saga's folder in (created if missing).
        template: A folder of templates to use instead of the built-in ones.
        force: Write into an existing, non-empty folder: generated files are overwritten,
            other files are kept.
        progress: Called with a one-line message when a phase is slow (drawing the diagram
            for more than ``NOTICE_AFTER`` seconds), to show the user what is going on.

    Returns:
        What was written.

    Raises:
        ScaffoldError: A name is unusable, the folder exists, or a template is broken;
            nothing was written.
    """
    _check_saga_name(name)
    step_names = _step_names(steps)
    for step in step_names:
        _check_step_name(step)
    if len(set(step_names)) != len(step_names):
        twice = sorted({s for s in step_names if step_names.count(s) > 1})
        raise ScaffoldError(
            f"step {twice[0]!r} is listed more than once: give every step its own name"
        )
    target = Path(directory) / name
    _check_target(Path(directory), target, force)
    sources = _template_files(_template_root(template))
    variables = template_variables(name, step_names)
    env = _environment({k: v for k, v in sources.items() if isinstance(v, str)})
    svg = "diagram.svg"
    outputs = _output_paths(env, sources, variables, reserved=svg)
    _check_overwrites(target, [*outputs.values(), svg])

    with tempfile.TemporaryDirectory(prefix="statesaga-new-") as tmp:
        stage = Path(tmp) / name
        stage.mkdir()
        python = {k: v for k, v in outputs.items() if v.endswith(".py")}
        _render(env, sources, python, variables, stage)
        saga = _load_saga(stage, str(variables["class_name"]))
        diagram_problem = _draw(saga, stage / svg, progress)
        variables["mermaid"] = _mermaid(saga)
        variables["svg"] = None if diagram_problem else svg
        others = {k: v for k, v in outputs.items() if k not in python}
        _render(env, sources, others, variables, stage)
        written = sorted([*outputs.values(), *([] if diagram_problem else [svg])])
        kept = _existing(target, set(written))
        _install(stage, target, written)
    return Scaffolded(target, tuple(written), kept, diagram_problem)


def template_variables(name: str, steps: Sequence[str]) -> dict[str, Any]:
    """The variables every template sees, except ``mermaid`` and ``svg``.

    ``mermaid`` and ``svg`` are drawn from the generated package, so only templates of files
    that are not Python (``README.md``, say) see them; docs/scaffolding.md lists them all.
    """
    from . import __version__

    camel = "".join(word.capitalize() for word in name.split("_"))
    phrases = [" ".join(step.split("_")) for step in steps]
    return {
        "name": name,
        "class_name": camel if camel.endswith("Saga") and camel != "Saga" else f"{camel}Saga",
        "title": " ".join(name.split("_")).capitalize(),
        "summary": ", ".join(phrases),
        "steps": [
            {
                "name": step,
                "title": phrase.capitalize(),
                "compensation": f"undo_{step}",
                "index": index,
            }
            for index, (step, phrase) in enumerate(zip(steps, phrases, strict=True), start=1)
        ],
        "statesaga_version": __version__,
    }


def _mermaid(saga: type[SagaDefinition]) -> str:
    """The Mermaid text of ``saga``'s machine, without a trailing newline."""
    return mermaid_of(saga).rstrip("\n")


# -- checking names ---------------------------------------------------------------------------


def _step_names(steps: str | Sequence[str] | None) -> list[str]:
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


def _check_saga_name(name: str) -> None:
    _check_name(name, "saga name")
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


def _check_target(directory: Path, target: Path, force: bool) -> None:
    # The nearest part of --dir that exists must be a folder, or the folder cannot be made.
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ScaffoldError(f"{str(existing)!r} is not a folder: choose another --dir")
    if not target.exists():
        return
    if not target.is_dir():
        raise ScaffoldError(
            f"{str(target)!r} exists and is not a folder: remove it or choose another name"
        )
    if not force and any(target.iterdir()):
        raise ScaffoldError(
            f"{str(target)!r} already exists and is not empty: choose another name or --dir, "
            "or pass --force to overwrite the generated files (other files are kept)"
        )


def _check_overwrites(target: Path, outputs: Iterable[str]) -> None:
    """Refuse to generate a file where the target folder has a folder (or a file as a folder)."""
    if not target.is_dir():
        return
    for relative in outputs:
        path = target
        for part in PurePosixPath(relative).parts[:-1]:
            path = path / part
            if path.exists() and not path.is_dir():
                raise ScaffoldError(
                    f"{str(path)!r} is a file but the template makes it a folder: move it away"
                )
        if (target / relative).is_dir():
            raise ScaffoldError(
                f"{str(target / relative)!r} is a folder but the template writes a file there: "
                "move it away"
            )


# -- templates --------------------------------------------------------------------------------


def _template_root(template: str | Path | None) -> Traversable:
    if template is None:
        return template_dir()
    root = Path(template)
    if not root.is_dir():
        raise ScaffoldError(f"template folder {str(root)!r} does not exist: check --template")
    return root


def _template_files(root: Traversable) -> dict[str, str | bytes]:
    """Every file under ``root`` by relative POSIX path: text for templates, bytes otherwise."""
    found: dict[str, str | bytes] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.name in _SKIPPED or entry.name.endswith(".pyc"):
                continue
            relative = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, f"{relative}/")
            elif relative.endswith(_TEMPLATE_SUFFIX):
                try:
                    found[relative] = entry.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise ScaffoldError(
                        f"template {relative!r} is not UTF-8 text: save it as UTF-8, or drop "
                        f"the {_TEMPLATE_SUFFIX} suffix to copy it as it is"
                    ) from None
            else:
                found[relative] = entry.read_bytes()

    walk(root, "")
    if not found:
        raise ScaffoldError(f"template folder {str(root)!r} has no files: check --template")
    return found


def _environment(sources: Mapping[str, str]) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.DictLoader(dict(sources)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # the output is code and Markdown, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _output_paths(
    env: jinja2.Environment,
    sources: Mapping[str, str | bytes],
    variables: Mapping[str, Any],
    *,
    reserved: str,
) -> dict[str, str]:
    """Each template's output path: its own path, rendered, without the ``.jinja`` suffix."""
    outputs: dict[str, str] = {}
    for relative in sorted(sources):
        rendered = _render_text(env, relative, variables, source=relative)
        if rendered.endswith(_TEMPLATE_SUFFIX):
            rendered = rendered[: -len(_TEMPLATE_SUFFIX)]
        parts = PurePosixPath(rendered).parts
        if not rendered.strip():
            raise ScaffoldError(
                f"template {relative!r} renders to an empty file name: fix the template's name"
            )
        if not parts or rendered.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ScaffoldError(
                f"template {relative!r} would write to {rendered!r}, outside the saga's folder: "
                "fix the template's name"
            )
        clash = next((k for k, v in outputs.items() if v == rendered), None)
        if clash is not None or rendered == reserved:
            other = repr(clash) if clash is not None else "the diagram"
            raise ScaffoldError(
                f"templates {relative!r} and {other} both write {rendered!r}: rename one"
            )
        outputs[relative] = rendered
    return outputs


def _render_text(
    env: jinja2.Environment,
    name: str,
    variables: Mapping[str, Any],
    *,
    source: str | None = None,
) -> str:
    """Render template ``name`` (or the text ``source``), turning Jinja errors into one line."""
    try:
        template = env.from_string(source) if source is not None else env.get_template(name)
        return template.render(variables)
    except jinja2.TemplateSyntaxError as error:
        raise ScaffoldError(
            f"template {name!r} line {error.lineno}: {error.message}: fix the template"
        ) from None
    except jinja2.UndefinedError as error:
        if any(f"'{v}' is undefined" in str(error) for v in _DIAGRAM_VARIABLES):
            hint = "mermaid and svg are drawn from the generated code: Python files cannot use them"
        else:
            hint = f"templates can use {', '.join(sorted({*variables, *_DIAGRAM_VARIABLES}))}"
        raise ScaffoldError(f"template {name!r}: {error.message}: {hint}") from None
    except Exception as error:  # a filter or test raised: the template is at fault
        raise ScaffoldError(
            f"template {name!r} failed: {type(error).__name__}: {error}: fix the template"
        ) from None


def _render(
    env: jinja2.Environment,
    sources: Mapping[str, str | bytes],
    outputs: Mapping[str, str],
    variables: Mapping[str, Any],
    stage: Path,
) -> None:
    for relative, output in outputs.items():
        source = sources[relative]
        path = stage / output
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            path.write_bytes(source)
        else:
            path.write_text(_render_text(env, relative, variables), encoding="utf-8")


# -- the generated package --------------------------------------------------------------------


@contextmanager
def _imported(folder: Path) -> Iterator[Any]:
    """Import the package in ``folder`` under a private name, and forget it afterwards."""
    alias = f"_statesaga_new_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(
        alias, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise ScaffoldError(f"cannot import the generated package in {str(folder)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ in the folder the user gets
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.dont_write_bytecode = bytecode
        for key in [k for k in sys.modules if k == alias or k.startswith(f"{alias}.")]:
            del sys.modules[key]


def _load_saga(stage: Path, class_name: str) -> type[SagaDefinition]:
    if not (stage / "__init__.py").is_file():
        raise ScaffoldError(
            f"the templates make no __init__.py: a saga template must make a package whose "
            f"__init__.py exports {class_name}"
        )
    try:
        with _imported(stage) as package:
            saga = getattr(package, class_name, None)
    except (Exception, SystemExit) as error:  # sys.exit() at import must not end the command
        text = " ".join(str(error).split())  # one line, even for a multi-line error
        text = re.sub(r"_statesaga_new_[0-9a-f]{32}", stage.name, text)  # the private alias
        if isinstance(error, SystemExit):
            text = f"sys.exit({text}) is called when the package is imported"
        raise ScaffoldError(
            f"the generated package does not import: {type(error).__name__}: {text}: "
            "fix the templates"
        ) from None
    if not (isinstance(saga, type) and issubclass(saga, SagaDefinition)):
        raise ScaffoldError(
            f"the generated __init__.py does not export the saga class {class_name}: "
            "fix the templates"
        )
    return saga


def _draw(
    saga: type[SagaDefinition], path: Path, progress: Callable[[str], object] | None
) -> str | None:
    """Draw ``saga`` as SVG at ``path``; return why not when Graphviz cannot.

    When drawing lasts past ``NOTICE_AFTER`` seconds, ``progress`` is told what is going on.
    An interruption (Ctrl-C, or SIGTERM turned into an exception) stops Graphviz with it.
    """
    if shutil.which("dot") is None:
        return "Graphviz's dot is not installed: apt-get install graphviz, or brew install graphviz"
    notice = threading.Timer(
        NOTICE_AFTER, lambda: progress and progress(f"drawing {path.name} with Graphviz...")
    )
    notice.daemon = True
    notice.start()
    try:
        render(saga, path, format="svg")
    except RenderError as error:
        return str(error)
    finally:
        notice.cancel()
    return None


# -- moving into place ------------------------------------------------------------------------


def _existing(target: Path, generated: set[str]) -> tuple[str, ...]:
    """Files already in ``target`` that the templates do not make (they are kept)."""
    if not target.is_dir():
        return ()
    found = (p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    return tuple(sorted(p for p in found if p not in generated))


def _install(stage: Path, target: Path, files: Sequence[str]) -> None:
    """Move the rendered folder into place, all of it or (on any error) nothing."""
    made: list[Path] = []  # folders created here, removed again if the install fails
    try:
        _make_folder(target.parent, made)
        if not target.exists():
            _install_folder(stage, target)
        else:
            _install_files(stage, target, files, made)
    except BaseException as error:  # an interruption too: leave nothing behind
        for folder in reversed(made):
            with suppress(OSError):
                folder.rmdir()
        if not isinstance(error, OSError):
            raise
        hint = (
            "check its permissions"
            if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
            else "nothing was written"
        )
        raise ScaffoldError(
            f"cannot write {str(target)!r}: {error.strerror or error}: {hint}"
        ) from None


def _make_folder(folder: Path, made: list[Path]) -> None:
    """Create ``folder`` and its missing parents, adding each to ``made`` as it is created."""
    for path in [p for p in (folder, *folder.parents) if not p.exists()][::-1]:
        path.mkdir()
        made.append(path)


def _install_folder(stage: Path, target: Path) -> None:
    try:
        stage.rename(target)  # at once, when both are on one file system
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    # Copied next to the target first, then renamed: an interrupted copy leaves no half folder.
    copy = target.with_name(f".{target.name}.statesaga-new-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(stage, copy)
        if target.exists():  # appeared in the meantime: never merge into it
            raise FileExistsError(errno.EEXIST, "it appeared while the folder was generated")
        os.rename(copy, target)
    finally:
        if copy.exists():
            shutil.rmtree(copy, ignore_errors=True)


def _install_files(stage: Path, target: Path, files: Sequence[str], made: list[Path]) -> None:
    """Into an existing folder: copy every generated file beside its destination, then rename.

    Only once every copy has worked are the destinations replaced, each by a rename, so an
    error or an interruption while copying leaves the folder's files as they were.
    """
    copies: list[tuple[Path, Path]] = []
    try:
        for relative in files:
            destination = target / relative
            _make_folder(destination.parent, made)
            copy = destination.with_name(f".{destination.name}.statesaga-new")
            copies.append((copy, destination))
            shutil.copyfile(stage / relative, copy)
        for copy, destination in copies:
            os.replace(copy, destination)
    finally:
        for copy, _ in copies:
            with suppress(FileNotFoundError):
                copy.unlink()
