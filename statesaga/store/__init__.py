"""Durable homes for runs: one contract, several backends, chosen by URL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .._urls import hide_credentials, split_schema
from .base import (
    OUTBOX_STATUSES,
    SCHEMA_VERSION,
    Commit,
    LeaseHeld,
    OutboxRecord,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    SagaStore,
    SignalArrived,
    SignalRecord,
    SignalRefused,
    StepRecord,
    StoreError,
    StoreNotFound,
    TransitionRecord,
    WriteConflict,
)
from .memory import MemoryStore

if TYPE_CHECKING:  # imported when first named: PostgreSQL's needs its driver
    from .postgres import PostgresStore
    from .sqlite import SQLiteStore

__all__ = [
    "OUTBOX_STATUSES",
    "SCHEMA_VERSION",
    "SCHEMES",
    "Commit",
    "LeaseHeld",
    "MemoryStore",
    "OutboxRecord",
    "PostgresStore",
    "RunNotFound",
    "RunRecord",
    "RunSnapshot",
    "SQLiteStore",
    "SagaStore",
    "SignalArrived",
    "SignalRecord",
    "SignalRefused",
    "StepRecord",
    "StoreError",
    "StoreNotFound",
    "TransitionRecord",
    "WriteConflict",
    "hide_password",
    "store_from_url",
]

#: URL schemes ``store_from_url`` understands.
SCHEMES = ("sqlite", "postgresql", "memory")

#: Environment variable naming the CLI's default store.
ENV_VAR = "STATESAGA_STORE"
DEFAULT_URL = "sqlite:///statesaga.db"


def hide_password(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs; never raises,
    also for libpq's several hosts)."""
    return hide_credentials(url)


def store_from_url(url: str | None = None) -> SagaStore:
    """A (not yet opened) store for ``url``, or for ``$STATESAGA_STORE``, or the SQLite default.

    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``,
    ``postgresql://user@host/db[?schema=NAME]`` and ``memory://`` are understood.

    Raises:
        StoreError: The scheme is unknown (the message lists the known ones).
    """
    url = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreError(
            f"{hide_password(url)!r} is not a store URL: use sqlite:///path.db, "
            "postgresql://user@host/db or memory://"
        )
    scheme = scheme.lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise StoreError(f"{url!r} names no file: use sqlite:///path/to/file.db")
        return SQLiteStore(path)
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresStore
        except ImportError as error:
            raise StoreError(
                f"{hide_password(url)!r} needs the PostgreSQL driver ({error}): "
                "pip install 'statesaga[postgres]'"
            ) from None
        plain, schema = split_schema(url, "public")
        return PostgresStore(plain, schema=schema)
    if scheme == "memory":
        return MemoryStore()
    known = ", ".join(f"{s}://" for s in SCHEMES)
    raise StoreError(f"unknown store URL scheme {scheme!r} in {hide_password(url)!r}: use {known}")


def __getattr__(name: str) -> object:
    """``SQLiteStore`` and ``PostgresStore``, imported when first asked for."""
    found: object
    if name == "SQLiteStore":
        from .sqlite import SQLiteStore as found
    elif name == "PostgresStore":
        from .postgres import PostgresStore as found
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = found
    return found
