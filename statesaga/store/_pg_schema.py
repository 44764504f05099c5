"""Setting up a PostgreSQL store's schema: check the version of its tables, create what is missing.

A schema of an older version is migrated in place; one of a newer version is refused before
anything is written to it.
"""

from __future__ import annotations

from ._pg_sql import Conn, Queries
from .base import SCHEMA_VERSION, StoreError, StoreNotFound

#: The tables and indexes a store's schema holds.
OBJECTS = frozenset(
    {
        "statesaga_meta",
        "statesaga_runs",
        "statesaga_runs_by_status",
        "statesaga_runs_by_saga",
        "statesaga_runs_by_created",
        "statesaga_runs_runnable",
        "statesaga_runs_waking",
        "statesaga_runs_leased",
        "statesaga_signals",
        "statesaga_steps",
        "statesaga_history",
        "statesaga_outbox",
        "statesaga_outbox_by_status",
        "statesaga_outbox_by_run",
        "statesaga_outbox_unsent_keys",
    }
)


#: The older versions a schema is migrated from (``Queries.migrations``).
MIGRATABLE = frozenset({1})


async def prepare_schema(
    conn: Conn, q: Queries, *, schema: str, lock_key: int, store: str, create: bool = True
) -> None:
    """Check the version of the tables in ``schema``, migrate them from an older version, and
    create any that are missing.

    A store of an older version is migrated with ``create`` false too: a store that exists opens
    for reads and writes alike, and every statement names the current tables.

    Args:
        conn: A connection in autocommit mode.
        q: The statements of ``schema``.
        schema: The schema's name.
        lock_key: The advisory lock that serialises creating the tables.
        store: The store's URL, password hidden, for messages.
        create: With ``False``, a schema without statesaga's version record (or no schema at
            all) is left as it is and ``StoreNotFound`` raised.

    Raises:
        StoreNotFound: ``create`` is false and ``schema`` holds no statesaga store.
        StoreError: The schema holds a version this statesaga cannot use (it is left as it was).
        psycopg.Error: The server refused a statement.
    """
    # Read-only first, so a schema we refuse is left exactly as it was.
    version, present, has_schema = await _inspect(conn, q, schema, store)
    if version is None and not create:
        if not has_schema:
            raise StoreNotFound(store, f"schema {schema!r} does not exist")
        if not present:
            raise StoreNotFound(store, f"schema {schema!r} holds no statesaga tables")
        reason = f"schema {schema!r} holds statesaga tables but no schema version"
        raise StoreNotFound(store, reason, foreign=True)
    _check_version(version, schema, store)
    if version == SCHEMA_VERSION and present >= OBJECTS:
        return
    async with conn.transaction():
        # Workers starting together would race on CREATE ... IF NOT EXISTS (which is not
        # safe concurrently in PostgreSQL): one creates, the others wait and then see it.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
        version, present, has_schema = await _inspect(conn, q, schema, store)
        _check_version(version, schema, store)
        if not has_schema:  # not always: CREATE SCHEMA needs a privilege we may lack
            await conn.execute(q.create_schema, ())  # (): so that %% reads as %
        # DDL is transactional: a migration applies whole or not at all.
        while version is not None and version < SCHEMA_VERSION:
            for statement in q.migrations[version]:
                await conn.execute(statement, ())
            version += 1
        *tables, insert_version = q.schema
        for statement in tables:
            await conn.execute(statement, ())
        await conn.execute(insert_version, (str(SCHEMA_VERSION),))


async def _inspect(
    conn: Conn, q: Queries, schema: str, store: str
) -> tuple[int | None, set[str], bool]:
    """The stored schema version (``None`` if absent), our objects present, schema exists."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (schema, sorted(OBJECTS)),
    )
    present = {row[0] for row in await cur.fetchall()}
    cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    has_schema = await cur.fetchone() is not None
    if "statesaga_meta" not in present:
        return None, present, has_schema
    row = await (await conn.execute(q.version, ())).fetchone()
    if row is None:
        return None, present, has_schema
    try:
        return int(row[0]), present, has_schema
    except (TypeError, ValueError):
        raise StoreError(
            f"PostgreSQL store {store}: {schema}.statesaga_meta.schema_version "
            f"is {row[0]!r}, not a number: this is not a statesaga schema, or it is damaged"
        ) from None


def _check_version(version: int | None, schema: str, store: str) -> None:
    if version is None or version == SCHEMA_VERSION or version in MIGRATABLE:
        return
    where = f"PostgreSQL store {store} (schema {schema!r})"
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where} holds schema version {version}, newer than this statesaga understands "
            f"({SCHEMA_VERSION}); upgrade statesaga to use it (nothing was changed)"
        )
    raise StoreError(
        f"{where} holds schema version {version} and this statesaga (schema "
        f"{SCHEMA_VERSION}) has no migration for it"
    )
