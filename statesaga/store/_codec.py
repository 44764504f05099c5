"""Records to JSON and back, with one cattrs converter for every stored shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from .base import Commit, StoreError, TransitionRecord

converter = cattrs.Converter()
# Named tuples are stored as objects, like every other record.
converter.register_unstructure_hook(TransitionRecord, lambda t: t._asdict())
converter.register_structure_hook(TransitionRecord, lambda d, _: TransitionRecord(**d))
# A commit's outbox and wait fields are left out when unused, so commits without messages or
# waits keep the shape of schema version 1 (the fields were added later, with defaults).
converter.register_unstructure_hook(
    Commit,
    make_dict_unstructure_fn(
        Commit,
        converter,
        messages=override(omit_if_default=True),
        claim_until=override(omit_if_default=True),
        wake_at=override(omit_if_default=True),
        unless_signals=override(omit_if_default=True),
        release=override(omit_if_default=True),
    ),
)

T = TypeVar("T")
# Built once: json.dumps() with options builds a new encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode


def dumps(value: Any, *, run_id: str | None = None) -> str:
    """Compact, key-sorted JSON; a value that JSON cannot hold is a ``StoreError``."""
    if type(value) is dict and not value:
        return "{}"  # what most steps return: no need to start the encoder
    try:
        return _encode(value)
    except (TypeError, ValueError) as error:
        where = f" of run {run_id}" if run_id else ""
        raise StoreError(
            f"cannot store a value{where} as JSON ({error}): inputs and step results must be "
            "JSON data (dicts, lists, strings, numbers, booleans, None)",
            run_id=run_id,
        ) from error


_CONFIGS: dict[tuple[tuple[str, str], ...], str] = {}


def dumps_config(config: Mapping[str, str]) -> str:
    """``dumps`` of a run's region states, remembered: runs of a saga pass the same few."""
    key = tuple(config.items())
    text = _CONFIGS.get(key)
    if text is None:
        if len(_CONFIGS) >= 4096:  # a bound for processes running very many shapes
            _CONFIGS.clear()
        text = _CONFIGS[key] = _encode(dict(config))
    return text


def loads(text: str | bytes | None, *, run_id: str, what: str) -> Any:
    """Parse stored JSON; corrupt data is a ``StoreError`` naming the run."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise StoreError(
            f"run {run_id}: stored {what} is not valid JSON ({error})", run_id=run_id
        ) from error


def unstructure(record: Any) -> Any:
    """A record as plain data."""
    return converter.unstructure(record)


def structure(data: Any, cls: type[T]) -> T:
    """Plain data as a record of type ``cls``."""
    return converter.structure(data, cls)
