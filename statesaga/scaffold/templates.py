"""The templates of a saga folder: where they are, what variables they see, and rendering them.

Templates are rendered with Jinja's ``StrictUndefined``; every Jinja error becomes a one-line
``ScaffoldError`` naming the template.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from ..errors import ScaffoldError

_TEMPLATE_SUFFIX = ".jinja"
_SKIPPED = frozenset({"__pycache__", ".git", ".DS_Store"})
# Both are drawn from the generated code, so templates of Python files cannot use them.
_DIAGRAM_VARIABLES = ("mermaid", "svg")


def template_dir() -> Traversable:
    """The built-in templates: inside the installed package, or a checkout's ``templates/``."""
    packaged = importlib.resources.files("statesaga") / "_templates"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "templates"
    if checkout.is_dir():  # an editable install: the templates are not copied into the package
        return checkout
    raise ScaffoldError("statesaga's built-in templates are missing: reinstall statesaga")


def template_variables(name: str, steps: Sequence[str]) -> dict[str, Any]:
    """The variables every template sees, except ``mermaid`` and ``svg``.

    ``mermaid`` and ``svg`` are drawn from the generated package, so only templates of files
    that are not Python (``README.md``, say) see them; docs/scaffolding.md lists them all.
    """
    from .. import __version__

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


def template_root(template: str | Path | None) -> Traversable:
    """The folder of templates to use: ``template``, or the built-in ones if ``None``."""
    if template is None:
        return template_dir()
    root = Path(template)
    if not root.is_dir():
        raise ScaffoldError(f"template folder {str(root)!r} does not exist: check --template")
    return root


def template_files(root: Traversable) -> dict[str, str | bytes]:
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


def environment(sources: Mapping[str, str]) -> jinja2.Environment:
    """A strict Jinja environment over the template texts ``sources``."""
    return jinja2.Environment(
        loader=jinja2.DictLoader(dict(sources)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # the output is code and Markdown, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def output_paths(
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


def render_files(
    env: jinja2.Environment,
    sources: Mapping[str, str | bytes],
    outputs: Mapping[str, str],
    variables: Mapping[str, Any],
    stage: Path,
) -> None:
    """Write each of ``outputs`` (template -> output path) under ``stage``: rendered, or copied
    as it is when the template is not text."""
    for relative, output in outputs.items():
        source = sources[relative]
        path = stage / output
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            path.write_bytes(source)
        else:
            path.write_text(_render_text(env, relative, variables), encoding="utf-8")
