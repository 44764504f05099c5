"""``inbox_for``: the inbox a URL or a store names, on PostgreSQL or SQLite."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .._urls import hide_credentials, split_schema
from ..errors import InboxError

if TYPE_CHECKING:  # the PostgreSQL driver is optional: imported when a URL asks for it
    from .inbox_postgres import PostgresInbox
    from .inbox_sqlite import SQLiteInbox


def inbox_for(target: Any, *, consumer: str) -> PostgresInbox | SQLiteInbox:
    """A (not yet opened) inbox in the database ``target`` names.

    Args:
        target: ``postgresql://user@host/db[?schema=NAME]``, ``sqlite:///path.db``, or a
            ``PostgresStore`` or ``SQLiteStore`` (the inbox then lives beside its runs).
        consumer: The consumer name ids are recorded under.

    Raises:
        InboxError: ``target`` is neither a known URL nor a store.
    """
    url = target if isinstance(target, str) else getattr(target, "url", None)
    if not isinstance(url, str):
        raise InboxError(
            f"{target!r} is not a database: pass postgresql://..., sqlite:///... or a store"
        )
    schema = getattr(target, "schema", None)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres"):
        try:
            from .inbox_postgres import PostgresInbox
        except ImportError as error:
            raise InboxError(
                f"a PostgreSQL inbox needs the PostgreSQL driver ({error}): "
                "pip install 'statesaga[postgres]'"
            ) from None
        plain, schema = split_schema(url, schema or "public")
        return PostgresInbox(plain, consumer=consumer, schema=schema)
    if scheme == "sqlite" and sep:
        from .inbox_sqlite import SQLiteInbox

        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise InboxError(f"{url!r} names no file: use sqlite:///path/to/file.db")
        return SQLiteInbox(os.fspath(path), consumer=consumer)
    raise InboxError(
        f"{hide_credentials(url, tokens=True)!r} is not an inbox database: use postgresql://user@host/db"
        "[?schema=NAME] or sqlite:///path.db"
    )
