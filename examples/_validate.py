"""Input checks shared by the examples: a bad field is refused before any step runs."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import TypeGuard

from statesaga import InvalidInputError

_CODE = r"[A-Z0-9]+(?:-[A-Z0-9]+)*"


class Fields:
    """Checks one saga's input fields; each check returns the value or raises ``InvalidInputError``.

    Args:
        saga: The saga's name, for the error message.
    """

    def __init__(self, saga: str) -> None:
        self.saga = saga

    def refuse(self, field: str, problem: str) -> InvalidInputError:
        """The error for ``field``, to raise."""
        return InvalidInputError(self.saga, field, problem)

    def ident(self, field: str, value: object, prefix: str) -> str:
        """An id such as ``ORD-123``: ``prefix``, a dash, then capital letters and digits."""
        return self.pattern(field, value, rf"{prefix}-{_CODE}", f"'{prefix}-123'")

    def code(self, field: str, value: object, example: str) -> str:
        """A code of capital letters and digits, parts joined by dashes (``ITEM-1``, ``AA123``)."""
        return self.pattern(field, value, _CODE, example)

    def pattern(self, field: str, value: object, regex: str, example: str) -> str:
        """A string matching ``regex`` in full."""
        if not isinstance(value, str) or not re.fullmatch(regex, value):
            raise self.refuse(field, f"must look like {example}, not {value!r}")
        return value

    def amount(self, field: str, value: object) -> float:
        """A positive amount of money, at most two decimals."""
        if not _is_number(value) or value <= 0:
            raise self.refuse(field, f"must be a number above 0, not {value!r}")
        number = float(value)
        if round(number, 2) != number:
            raise self.refuse(field, f"must have at most two decimals, not {value!r}")
        return number

    def count(self, field: str, value: object) -> int:
        """A whole number above 0."""
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self.refuse(field, f"must be a whole number above 0, not {value!r}")
        return value

    def flag(self, field: str, value: object) -> bool:
        """``True`` or ``False`` (not merely truthy)."""
        if not isinstance(value, bool):
            raise self.refuse(field, f"must be True or False, not {value!r}")
        return value

    def choice(self, field: str, value: object, choices: Collection[str]) -> str:
        """One of ``choices``."""
        if value not in choices:
            known = ", ".join(sorted(choices))
            raise self.refuse(field, f"must be one of {known}, not {value!r}")
        return str(value)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
