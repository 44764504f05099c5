"""What a durable run stores: JSON data, exactly as a resumed run will read it back.

A durable run's input and step results go through JSON. So that the first run reads what a
resumed one would, the engine hands steps the stored form from the start: tuples become
lists, subclasses of dict, list, str, int and float become the plain types. What JSON cannot
hold, or would change the meaning of (a key that is not a string comes back as one, so
``data["qty"][101]`` would fail after a resume), is refused with the path to the value.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .store._codec import dumps
from .store.base import StoreError

_PLAIN = (str, int, float, bool, type(None))


def as_stored(value: Any, *, what: str, run_id: str) -> Any:
    """``value`` as the store will give it back, or ``StoreError`` naming what is wrong.

    Args:
        value: An input or a step's result.
        what: How to name it in an error (``input``, ``result``).
        run_id: The run, for the error.
    """
    if type(value) is dict and not value:
        return {}
    try:
        stored = json.loads(dumps(value, run_id=run_id))
    except StoreError:
        problem = _problem(value, what)
        if problem is None:
            raise
        raise _refused(problem, run_id) from None
    if stored != value:  # changed by the trip: only a key that is not a string is refused
        problem = _problem(value, what)
        if problem is not None:
            raise _refused(problem, run_id)
    return stored


def json_object(text: str) -> dict[str, Any]:
    """``text`` read as a JSON object (a signal's payload as a person types it), or
    ``ValueError`` saying what it is instead."""
    try:
        data = json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(data, dict):
        kind = "null" if data is None else _JSON_KINDS.get(type(data), type(data).__name__)
        raise ValueError(f"must be a JSON object such as '{{\"amount\": 42}}', not {kind}")
    return data


_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def _not_json(name: str) -> Any:
    raise ValueError(f"not JSON: {name} is not a JSON number")


def _refused(problem: str, run_id: str) -> StoreError:
    return StoreError(f"cannot store run {run_id}: {problem}", run_id=run_id)


def _problem(value: Any, path: str, within: frozenset[int] = frozenset()) -> str | None:
    """The first thing in ``value`` that is not JSON data, or whose key JSON would change.

    ``within``: the containers ``value`` lies in (a container inside itself has no JSON form).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} is {value!r}, which JSON cannot hold: use None or a string"
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, dict | list | tuple):
        if id(value) in within:
            return f"{path} contains itself, which JSON cannot hold"
        within = within | {id(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (
                    f"{path} has the key {key!r} ({type(key).__name__}), which would come back "
                    f"as the string {_as_key(key)!r}: use string keys"
                )
            problem = _problem(item, f"{path}[{key!r}]", within)
            if problem is not None:
                return problem
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _problem(item, f"{path}[{index}]", within)
            if problem is not None:
                return problem
        return None
    return (
        f"{path} is a {type(value).__name__}, which is not JSON data (dicts, lists, strings, "
        "numbers, booleans, None): convert it (a set to a list, anything else to a string, "
        "say)"
    )


def _as_key(key: object) -> str:
    try:
        return str(next(iter(json.loads(json.dumps({key: 0})))))
    except (TypeError, ValueError):
        return str(key)
