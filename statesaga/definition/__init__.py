"""What users write: ``Saga``, ``Step``, ``Wait`` and ``Retry``, and the checks that guard them.

``SagaDefinition`` is here; ``Step`` and ``Retry`` are in ``step``, the checks of a saga's
steps as a whole (and the order they run in) in ``validation``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from ..errors import InvalidSagaError, Problem
from .step import (
    DEFAULT_COMPENSATE_RETRY,
    NO_RETRY,
    RESERVED_NAMES,
    Action,
    Condition,
    Retry,
    Step,
    is_number,
    to_seconds,
)
from .validation import ancestors, dependencies, topological, validate_steps
from .wait import ON_TIMEOUT, Wait

__all__ = [
    "DEFAULT_COMPENSATE_RETRY",
    "NO_RETRY",
    "ON_TIMEOUT",
    "RESERVED_NAMES",
    "Action",
    "Condition",
    "Retry",
    "SagaDefinition",
    "Step",
    "Wait",
    "ancestors",
    "dependencies",
    "topological",
    "validate_steps",
]


class SagaDefinition:
    """What a saga is: its steps, name and deadline, and one run's input. Users subclass
    ``statesaga.Saga``, which adds running it; the compiler and the loader need only this.

    ``SagaClass(**data)`` makes one run's input. The definition is checked when the class is
    created, so a broken saga fails at import time. The class attributes (``steps``, ``name``,
    ``deadline``) are described on ``statesaga.Saga``.
    """

    steps: ClassVar[Sequence[Step]]
    name: ClassVar[str]
    deadline: ClassVar[float | timedelta | None] = None

    #: Whether the class is a base for sagas (``abstract=True``) rather than a saga.
    abstract: ClassVar[bool] = True

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.abstract = abstract
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        deadline = to_seconds(cls.deadline)
        extra = []
        if deadline is not None and (not is_number(deadline) or not deadline > 0):
            extra.append(
                Problem(
                    None,
                    f"deadline={cls.deadline!r}: a deadline must be a positive number of "
                    "seconds, a timedelta, or None",
                )
            )
        else:
            cls.deadline = deadline
        if not abstract:
            cls.steps = validate_steps(cls.name, getattr(cls, "steps", ()), extra)
        elif extra:
            raise InvalidSagaError(cls.name, extra)

    def __init__(self, **data: Any) -> None:
        self._data: dict[str, Any] = data

    @property
    def data(self) -> Mapping[str, Any]:
        """This run's input, as given to the constructor."""
        return self._data

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._data.items())
        return f"{type(self).__name__}({args})"
