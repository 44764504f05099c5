"""Saga classes and the references that find them again: ``module:Class`` or
``path/to/file.py:Class``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import weakref
from importlib.machinery import PathFinder
from pathlib import Path
from types import ModuleType

from .definition import SagaDefinition
from .errors import StatesagaError
from .errors import TargetError as TargetError


def load_saga(target: str) -> type[SagaDefinition]:
    """The saga class ``target`` names (``package.module:SagaClass`` or ``file.py:SagaClass``).

    Raises:
        TargetError: The module cannot be imported, lacks the attribute, or it is no saga.
    """
    module_ref, sep, attr = target.rpartition(":")
    if not sep or not module_ref or not attr:
        raise TargetError(
            f"{target!r} is not a saga reference: write package.module:SagaClass "
            "or path/to/file.py:SagaClass"
        )
    if module_ref.endswith(".py") or "/" in module_ref:
        path = Path(module_ref)
        if not path.is_file():
            raise TargetError(f"cannot import {module_ref!r}: no such file")
        module = _import_file(path, module_ref)
    else:
        try:
            module = _import_module(module_ref)
        except StatesagaError:
            raise
        except Exception as error:
            raise TargetError(f"cannot import {module_ref!r}: {error}") from error
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"module {module_ref!r} has no attribute {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, SagaDefinition)):
        kind = type(obj).__name__
        raise TargetError(f"{target!r} is not a subclass of statesaga.Saga (it is a {kind} object)")
    return obj


def _import_file(path: Path, module_ref: str) -> ModuleType:
    """The module of a Python file, executed once per process (a worker that resumes many
    runs of one script must get one saga class, not a new one per run)."""
    resolved = path.resolve()
    name = f"{_FILE_MODULE}{resolved.stem}_{abs(hash(str(resolved))):x}"
    known = sys.modules.get(name)
    if known is not None:
        return known
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {module_ref!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise TargetError(f"cannot import {module_ref!r}: {error}") from error
    return module


_FILE_MODULE = "_statesaga_target_"

_REFERENCES: weakref.WeakKeyDictionary[type[SagaDefinition], str] = weakref.WeakKeyDictionary()


def saga_reference(saga: type[SagaDefinition]) -> str:
    """Where another process finds ``saga``: ``module:QualifiedName``, or
    ``/path/to/script.py:QualifiedName`` for a class defined in a script run as a program.

    A class in ``__main__`` is found by the module name ``python -m`` ran, or else by the
    script's file; one defined in a function or typed into an interactive session has no
    reference another process can use (``unimportable`` says so).
    """
    reference = _REFERENCES.get(saga)
    if reference is None:
        module = saga.__module__
        if module.startswith(_FILE_MODULE):  # loaded from its file by load_saga
            module = getattr(sys.modules.get(module), "__file__", None) or module
        elif module == "__main__":
            main = sys.modules.get("__main__")
            spec = getattr(main, "__spec__", None)
            file = getattr(main, "__file__", None)
            if spec is not None and spec.name:
                module = spec.name  # python -m package.module (or package.__main__)
            elif isinstance(file, str):
                module = os.path.abspath(file)  # python path/to/script.py
        reference = _REFERENCES[saga] = f"{module}:{saga.__qualname__}"
    return reference


def unimportable(reference: str) -> str | None:
    """Why another process could not import the saga ``reference`` names, when that is
    known without running its code; ``None`` when it may well import."""
    module_ref, _, attr = reference.rpartition(":")
    if "<locals>" in attr:
        return "the class is defined inside a function"
    if module_ref == "__main__":
        return "the class was defined in an interactive session or a program with no file"
    if module_ref.endswith(".py") or "/" in module_ref or os.sep in module_ref:
        if not Path(module_ref).is_file():
            return f"{module_ref} does not exist here"
        return None
    if module_ref.endswith(".__main__"):
        return (
            "the class is in a package's __main__.py, and importing that runs the program "
            "again: define it in another module of the package"
        )
    top = module_ref.partition(".")[0]
    if top in sys.modules:
        return None
    # Looked up as load_saga would import it, from the current folder too, without running
    # anything or changing sys.path.
    try:
        found = PathFinder.find_spec(top, [os.getcwd(), *sys.path]) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"no module named {top!r} here"


def _import_module(module_ref: str) -> ModuleType:
    """The module ``module_ref`` names, from ``sys.path``, or else with its top-level package
    found in the current folder, as ``python -m`` would find it.

    ``sys.path`` is left as it is (the command line puts the current folder on it, like
    ``python -m``): a module found here that imports a sibling by its top-level name needs
    the folder on ``sys.path`` too.
    """
    try:
        return importlib.import_module(module_ref)
    except ModuleNotFoundError as error:
        top = module_ref.partition(".")[0]
        if error.name != top or top in sys.modules:
            raise
        spec = PathFinder.find_spec(top, [os.getcwd()])
        if spec is None or spec.loader is None:
            raise
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(top, None)
        raise
    return importlib.import_module(module_ref)
