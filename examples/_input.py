"""A saga's input as an attrs class: checked by cattrs, refused naming the field at fault.

Each example describes its input as an attrs class (``Order``, ``Trip``, ...) whose
validators hold the business rules, and its saga's ``__init__`` calls
``structure(self.name, Order, data)``. Types are strict: ``"99.99"`` is not a number, ``1.5``
not a whole number, ``"yes"`` not ``True``. The first problem becomes an
``InvalidInputError`` naming its field (``user_id``, ``items[0].quantity``); valid input comes
back as plain data, which is what the steps read as ``ctx.data``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sized
from typing import Any, get_origin

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.gen import make_dict_structure_fn

from statesaga import InvalidInputError

#: A validator, as attrs calls it.
Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


class Refused(ValueError):
    """A validator's verdict on one field.

    Args:
        field: The field's name, or a path below it (``items[1].sku``).
        problem: What is wrong, such as ``must be above 0, not -2``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def structure(saga: str, cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` checked as a ``cls``, returned as plain data.

    Raises:
        InvalidInputError: A field is missing, unknown, of the wrong type or refused by a
            validator; it names the first such field.
    """
    try:
        value = converter.structure(data, cls)
    except cattrs.BaseValidationError as error:
        field, problem = _first_problem(error)
        raise InvalidInputError(saga, field, problem) from None
    plain: dict[str, Any] = converter.unstructure(value)
    return plain


# -- validators: the business rules ------------------------------------------------------------


def non_empty(_: object, attribute: attrs.Attribute[Any], value: Sized) -> None:
    """Refuses an empty (or blank) string or list."""
    if not (value.strip() if isinstance(value, str) else value):
        raise Refused(attribute.name, f"must not be empty, not {value!r}")


def positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """Refuses a number that is not above 0."""
    if not value > 0:
        raise Refused(attribute.name, f"must be above 0, not {value!r}")


def money(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """Refuses an amount that is not above 0 or has more than two decimals."""
    if not value > 0:
        raise Refused(attribute.name, f"must be above 0, not {value!r}")
    if round(value, 2) != value:
        raise Refused(attribute.name, f"must have at most two decimals, not {value!r}")


def one_of(*choices: str) -> Validator:
    """Refuses a value that is not one of ``choices``."""

    def check(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            known = ", ".join(sorted(choices))
            raise Refused(attribute.name, f"must be one of {known}, not {value!r}")

    return check


# -- the converter: strict types ---------------------------------------------------------------

converter = cattrs.Converter(forbid_extra_keys=True)


def _text(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, not {value!r}")
    return value


def _whole(value: object, _: type) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"must be a whole number, not {value!r}")
    return value


def _number(value: object, _: type) -> float:
    # A float, so that a step reads the same value after a resume (stored as JSON).
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"must be a number, not {value!r}")
    if not math.isfinite(value):
        raise TypeError(f"must be a finite number, not {value!r}")
    return float(value)


def _flag(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be True or False, not {value!r}")
    return value


def _record(cls: type[Any]) -> Callable[[object, type], Any]:
    """An attrs class from a mapping (a list or a string is refused, not indexed)."""
    build = make_dict_structure_fn(cls, converter)
    fields = ", ".join(repr(field.name) for field in attrs.fields(cls))

    def hook(value: object, _: type) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"must be a mapping with keys {fields}, not {value!r}")
        return build(value, cls)

    return hook


def _list(type_: Any) -> Callable[[object, type], list[Any]]:
    """A list from a list or a tuple (a string or a mapping is refused, not iterated)."""
    build = list_structure_factory(type_, converter)

    def hook(value: object, _: type) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise TypeError(f"must be a list, not {value!r}")
        items: list[Any] = build(value, type_)
        return items

    return hook


def _is_list(type_: Any) -> bool:
    origin = get_origin(type_)
    return isinstance(origin, type) and issubclass(origin, list)


for _type, _hook in ((str, _text), (int, _whole), (float, _number), (bool, _flag)):
    converter.register_structure_hook(_type, _hook)
converter.register_structure_hook_factory(attrs.has, _record)
converter.register_structure_hook_factory(_is_list, _list)


def _first_problem(error: BaseException, path: str = "") -> tuple[str, str]:
    """The path of the first field at fault in ``error`` (cattrs' tree), and its problem."""
    if isinstance(error, cattrs.ForbiddenExtraKeysError):
        known = ", ".join(field.name for field in attrs.fields(error.cl))
        return _below(path, sorted(error.extra_fields)[0]), f"is unknown (the fields are {known})"
    if isinstance(error, cattrs.ClassValidationError | cattrs.IterableValidationError):
        noted, plain = error.group_exceptions()
        if not noted:
            return _first_problem(plain[0], path)
        inner, note = noted[0]
        step = f"[{note.index}]" if isinstance(note, cattrs.IterableValidationNote) else note.name
        return _first_problem(inner, _below(path, step))
    if isinstance(error, Refused):
        return _below(path, error.field), error.problem
    if isinstance(error, KeyError):
        return path, "is missing"
    return path, str(error)


def _below(path: str, step: str) -> str:
    return f"{path}{step}" if step.startswith("[") or not path else f"{path}.{step}"
