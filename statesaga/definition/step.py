"""The values a saga's steps are made of: ``Step`` and ``Retry``, each checking itself."""

from __future__ import annotations

import functools
import inspect
import keyword
import math
import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import NonRetryableError
from ..vocabulary import SAGA_REGION

if TYPE_CHECKING:
    from ..context import Context

#: An action or compensation: ``async def f(ctx) -> Mapping | None``.
Action = Callable[["Context"], Any]
#: A step's condition: ``def f(ctx) -> bool``, a plain function of ``ctx.data`` and
#: ``ctx.results``.
Condition = Callable[["Context"], bool]

#: Names steps may not take: the saga's own region and states use them.
RESERVED_NAMES = frozenset({SAGA_REGION})

#: What a step's or a saga's name must match, and the rule in words for messages.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
NAME_RULE = (
    "a Python identifier that starts with a letter (letters, digits, underscores; "
    "at most 100 characters)"
)


def to_seconds(value: float | timedelta | None) -> float | None:
    """Seconds as a number: a ``timedelta`` converted, anything else as it is."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def _exception_types(
    value: type[BaseException] | Iterable[type[BaseException]],
) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        return (value,)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value  # kept for Retry.problems() to report
    return tuple(value)


@attrs.frozen
class Retry:
    """How often and how patiently to retry an action or compensation.

    The n-th retry waits ``min(delay * backoff ** (n - 1), max_delay)`` seconds, shortened by a
    random fraction of at most ``jitter`` so that many runs retrying together spread out.

    Attributes:
        attempts: Total calls, the first one included (``1`` means no retry).
        delay: Seconds before the first retry.
        backoff: Factor applied to the delay after each retry.
        max_delay: Upper bound for any one delay.
        jitter: Fraction (0 to 1) of each delay that is randomised.
        retry_on: Exception types that are retried; any other error fails at once.
            ``NonRetryableError`` is never retried.
    """

    attempts: int = 3
    delay: float = attrs.field(default=0.1, converter=to_seconds)
    backoff: float = 2.0
    max_delay: float = attrs.field(default=30.0, converter=to_seconds)
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_exception_types
    )

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether ``error`` raised by call number ``attempt`` (1-based) earns another call."""
        return (
            attempt < self.attempts
            and not isinstance(error, NonRetryableError)
            and isinstance(error, self.retry_on)
        )

    def delay_before(self, attempt: int, random: float) -> float:
        """Seconds to wait before call ``attempt`` (2 or more), given ``random`` in [0, 1)."""
        try:
            base = min(self.delay * self.backoff ** (attempt - 2), self.max_delay)
        except OverflowError:  # a long run of retries: the cap applies
            base = self.max_delay
        return base * (1.0 - self.jitter * random)

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty when they are usable)."""
        found = []
        if not isinstance(self.retry_on, tuple):
            found.append(
                f"Retry(retry_on={self.retry_on!r}): retry_on must be an exception type or a "
                "tuple of exception types, such as (ConnectionError, TimeoutError)"
            )
        if not _is_int(self.attempts) or self.attempts < 1:
            found.append(f"Retry(attempts={self.attempts!r}): attempts must be an integer >= 1")
        for label, value, low in (
            ("delay", self.delay, 0.0),
            ("backoff", self.backoff, 1.0),
            ("max_delay", self.max_delay, 0.0),
        ):
            if not is_number(value) or value < low:
                unit = "" if label == "backoff" else " seconds"
                found.append(f"Retry({label}={value!r}): {label} must be a number >= {low:g}{unit}")
        if not is_number(self.jitter) or not 0 <= self.jitter <= 1:
            found.append(f"Retry(jitter={self.jitter!r}): jitter must be between 0 and 1")
        bad = [
            t
            for t in (self.retry_on if isinstance(self.retry_on, tuple) else ())
            if not (isinstance(t, type) and issubclass(t, BaseException))
        ]
        if bad:
            found.append(f"Retry(retry_on=...): {bad!r} are not exception types")
        return found


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float (not a bool, not NaN or infinity)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


#: Used for compensations when a step does not say otherwise.
DEFAULT_COMPENSATE_RETRY = Retry(attempts=3)
NO_RETRY = Retry(attempts=1)


def _names(value: str | Step | Iterable[str | Step]) -> tuple[str, ...]:
    if isinstance(value, str | Step):
        value = [value]
    elif isinstance(value, bytes) or not isinstance(value, Iterable):
        return value  # kept for Step.problems() to report
    return tuple(item.name if isinstance(item, Step) else item for item in value)


@attrs.frozen
class Step:
    """One step of a saga: an action and, optionally, the compensation that undoes it.

    Attributes:
        name: A Python identifier, unique in its saga; it names the step's states.
        action: ``async def f(ctx) -> Mapping | None``.
        compensate: ``async def f(ctx) -> Mapping | None`` that undoes ``action``; it must
            tolerate "nothing to undo", since steps with an unknown outcome are compensated too.
        depends_on: Steps (names or ``Step`` objects) that must succeed before this one starts.
        retry: Retries of the action; ``None`` means a single attempt.
        timeout: Seconds (or a ``timedelta``) allowed for each attempt.
        pivot: The point of no return: once it succeeds, later steps are retried forward and
            never compensated.
        compensate_retry: Retries of the compensation; ``None`` means ``Retry(attempts=3)``.
        when: A condition, ``def f(ctx) -> bool``, evaluated when the step becomes ready:
            false skips the step (it is never called nor compensated, and steps that depend
            on it run without its result); raising fails it, without retries.
    """

    name: str
    action: Action
    compensate: Action | None = attrs.field(default=None, kw_only=True)
    depends_on: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_names)
    retry: Retry | None = attrs.field(default=None, kw_only=True)
    timeout: float | None = attrs.field(default=None, kw_only=True, converter=to_seconds)
    pivot: bool = attrs.field(default=False, kw_only=True)
    compensate_retry: Retry | None = attrs.field(default=None, kw_only=True)
    when: Condition | None = attrs.field(default=None, kw_only=True)

    def problems(self) -> list[str]:
        """What is wrong with this step taken alone (empty when it is usable)."""
        return [
            *self._name_problems(),
            *self._call_problems(),
            *self._when_problems(),
            *self._depends_on_problems(),
        ]

    def _when_problems(self) -> list[str]:
        if self.when is None:
            return []
        if not callable(self.when):
            return [f"when must be a function of the context, not {type(self.when).__name__}"]
        if _async_kind(self.when) is not None:
            return [
                "when must be a plain function (def, not async def) returning True or False: "
                "it decides from ctx.data and ctx.results, and calls nothing"
            ]
        if self.pivot is True:
            return [
                "the pivot cannot be conditional: the point of no return must be passed; "
                "make the step before or after it conditional instead"
            ]
        return []

    def _name_problems(self) -> list[str]:
        found = []
        if not isinstance(self.name, str):
            found.append(
                f"name {self.name!r} is {type(self.name).__name__}, not a string: name the "
                f"step with {NAME_RULE}"
            )
        elif not NAME.fullmatch(self.name):
            found.append(f"name {self.name!r} cannot name a state: use {NAME_RULE}")
        elif keyword.iskeyword(self.name):
            found.append(f"name {self.name!r} is a Python keyword: choose another name")
        elif self.name in RESERVED_NAMES:
            found.append(f"name {self.name!r} is reserved for the saga's own states")
        return found

    def _call_problems(self) -> list[str]:
        found = _callable_problems("action", self.action)
        if self.compensate is not None:
            found += _callable_problems("compensate", self.compensate)
        if not isinstance(self.pivot, bool):
            found.append(f"pivot must be True or False, not {self.pivot!r}")
        elif self.pivot and self.compensate is not None:
            found.append(
                "a pivot step is the point of no return and cannot have a compensation: "
                "remove compensate= or pivot=True"
            )
        for label, retry in (("retry", self.retry), ("compensate_retry", self.compensate_retry)):
            if retry is not None and not isinstance(retry, Retry):
                found.append(f"{label} must be a Retry or None, not {type(retry).__name__}")
            elif retry is not None:
                found += [f"{label}: {p}" for p in retry.problems()]
        if self.timeout is not None and (not is_number(self.timeout) or not self.timeout > 0):
            found.append(
                f"timeout={self.timeout!r}: a timeout must be a positive number of seconds"
            )
        return found

    def _depends_on_problems(self) -> list[str]:
        if not isinstance(self.depends_on, tuple):
            todo = (
                "leave depends_on out when the step waits for no other step"
                if self.depends_on is None
                else "name the steps it waits for (or pass their Step objects)"
            )
            return [
                "depends_on must be a step name or a sequence of step names, not "
                f"{self.depends_on!r}: {todo}"
            ]
        for dep in self.depends_on:
            if not isinstance(dep, str):
                return [
                    f"depends_on lists {dep!r} ({type(dep).__name__}), which is not a step "
                    "name: list step names (or Step objects)"
                ]
        if self.name in self.depends_on:
            return ["depends_on names the step itself"]
        return []


def _unwrap(fn: object) -> object:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _async_kind(fn: object) -> str | None:
    """``"coroutine"`` or ``"generator"`` for an ``async def`` callable, else ``None``."""
    fn = _unwrap(fn)
    candidates = [fn]
    if not inspect.isfunction(fn) and not inspect.ismethod(fn):  # an instance's __call__
        call = getattr(type(fn), "__call__", None)  # noqa: B004
        if call is not None:
            candidates.append(call)
    for candidate in candidates:
        if inspect.iscoroutinefunction(candidate):
            return "coroutine"
        if inspect.isasyncgenfunction(candidate):
            return "generator"
    return None


def _callable_problems(label: str, fn: object) -> list[str]:
    if not callable(fn):
        return [f"{label} must be an async function, not {type(fn).__name__}"]
    kind = _async_kind(fn)
    if kind == "coroutine":
        return []
    inner = _unwrap(fn)
    name = getattr(inner, "__qualname__", type(inner).__name__)
    if kind == "generator":
        return [
            f"{label} {name} is an async generator (its body uses 'yield'): an action or "
            "compensation is called once and awaited for its result; use 'return' instead "
            "of 'yield'"
        ]
    return [f"{label} {name} is not async: define it with 'async def'"]
