"""SQLite statements and operations of the outbox: emitted messages, claimed and marked."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ._rows import OUTBOX_COLUMNS, outbox_from_row
from .base import OutboxRecord, StoreError

# A new message is due at once (retry_at 0): not at its created_at, which comes from the
# emitting worker's clock and would hold its key back if that clock ran ahead of the relay's.
INSERT_MESSAGE = (
    "INSERT OR IGNORE INTO statesaga_outbox (id, run_id, step, topic, key, payload, headers,"
    " created_at, status, attempts, retry_at, claim_owner, claim_until)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
)
# Another unsent message of the key that the claiming owner is not sending right now.
_KEY_BLOCKED = (
    "SELECT 1 FROM statesaga_outbox WHERE key = ? AND status <> 'sent'"
    " AND (COALESCE(claim_owner, '') <> ? OR COALESCE(claim_until, 0) < ?) LIMIT 1"
)
# Due, unclaimed pending messages whose key has no message being sent and no earlier message
# that cannot go now: taking the first ``limit`` of them in seq order never skips one of a key.
# The keys being sent are found once, not once per candidate: with a backlog of one key (a
# long broker outage) a per-candidate scan of the key would make every claim quadratic.
_CLAIMABLE = (
    "WITH busy AS (SELECT DISTINCT key FROM statesaga_outbox WHERE status <> 'sent'"
    " AND key IS NOT NULL AND claim_until >= :now)"
    " SELECT seq FROM statesaga_outbox r WHERE r.status = 'pending' AND r.retry_at <= :now"
    " AND COALESCE(r.claim_until, 0) < :now AND (r.key IS NULL OR (r.key NOT IN busy"
    " AND NOT EXISTS (SELECT 1 FROM statesaga_outbox o WHERE o.key = r.key"
    " AND o.status <> 'sent' AND o.seq < r.seq AND (o.status = 'dead' OR o.retry_at > :now))))"
    " ORDER BY r.seq LIMIT :limit"
)
_CLAIM = "UPDATE statesaga_outbox SET claim_owner = ?, claim_until = ? WHERE seq = ?"
_SELECT_MESSAGE = f"SELECT {OUTBOX_COLUMNS} FROM statesaga_outbox WHERE seq = ?"
_UNCLAIM = "UPDATE statesaga_outbox SET claim_owner = NULL, claim_until = NULL WHERE seq = ?"
_BURY = (
    "UPDATE statesaga_outbox SET status = 'dead', claim_owner = NULL, claim_until = NULL,"
    " last_error = ? WHERE seq = ?"
)
_MARK_SENT = (
    "UPDATE statesaga_outbox SET status = 'sent', sent_at = ?, claim_owner = NULL,"
    " claim_until = NULL WHERE id = ? AND status = 'pending'"
)
_MARK_FAILED = (
    "UPDATE statesaga_outbox SET status = ?, attempts = attempts + 1, retry_at = ?,"
    " last_error = ?, claim_owner = NULL, claim_until = NULL"
    " WHERE id = ? AND claim_owner = ? AND status = 'pending'"
)
_RELEASE_MESSAGE = (
    "UPDATE statesaga_outbox SET claim_owner = NULL, claim_until = NULL,"
    " last_error = COALESCE(?, last_error) WHERE id = ? AND claim_owner = ? AND status = 'pending'"
)
_RETRY_DEAD = (
    "UPDATE statesaga_outbox SET status = 'pending', attempts = 0, retry_at = ?"
    " WHERE status = 'dead'"
)
_RETRY_ONE = (
    "UPDATE statesaga_outbox SET status = 'pending', attempts = 0, retry_at = ?"
    " WHERE id = ? AND status <> 'sent'"
)
_PURGE = "DELETE FROM statesaga_outbox WHERE status = ? AND created_at < ?"
_PURGE_ONE = "DELETE FROM statesaga_outbox WHERE id = ? AND status = ? AND created_at < ?"
LIST_OUTBOX = {
    False: f"SELECT {OUTBOX_COLUMNS} FROM statesaga_outbox ORDER BY seq DESC LIMIT ?",
    True: f"SELECT {OUTBOX_COLUMNS} FROM statesaga_outbox WHERE status = ?"
    " ORDER BY seq DESC LIMIT ?",
}

#: How ``commit`` claims its messages: (owner, until, now), or None to leave them unclaimed.
Claim = tuple[str, float, float] | None


def insert_messages(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]], claim: Claim
) -> list[str]:
    """Insert outbox rows, claiming what ``claim`` may take; the ids claimed."""
    if claim is None:
        conn.executemany(INSERT_MESSAGE, [(*row, 0.0, None, None) for row in rows])
        return []
    owner, until, now = claim
    # Each key is looked at once, before the inserts: the rows this commit claims are claimed
    # by ``owner`` and live, so they never block one another, and rows it leaves unclaimed
    # are behind a blocking one anyway. Once per message would be quadratic in a big commit.
    blocked = {
        key: conn.execute(_KEY_BLOCKED, (key, owner, now)).fetchone() is not None
        for key in {row[4] for row in rows if row[4] is not None}
    }
    claimed = []
    for row in rows:
        key = row[4]
        take = key is None or not blocked[key]
        values = (*row, 0.0, owner, until) if take else (*row, 0.0, None, None)
        if conn.execute(INSERT_MESSAGE, values).rowcount and take:
            claimed.append(row[0])
    return claimed


def outbox_claim(
    conn: sqlite3.Connection, arg: tuple[str, float, float, int]
) -> list[OutboxRecord]:
    owner, now, until, limit = arg
    seqs = [row[0] for row in conn.execute(_CLAIMABLE, {"now": now, "limit": max(limit, 0)})]
    conn.executemany(_CLAIM, [(owner, until, seq) for seq in seqs])
    records = []
    stopped: set[str] = set()  # keys whose head cannot be read: the rest wait behind it
    for seq in seqs:
        row = conn.execute(_SELECT_MESSAGE, (seq,)).fetchone()
        key = row[5]
        if key is not None and key in stopped:
            conn.execute(_UNCLAIM, (seq,))
            continue
        try:
            records.append(outbox_from_row(row))
        except StoreError as error:
            # A row damaged outside statesaga: dead, or it would fail every relay round and
            # stop every key. Its key's later messages wait behind it, as behind any dead one.
            conn.execute(_BURY, (f"cannot be read: {error}", seq))
            if key is not None:
                stopped.add(key)
    return records


def outbox_mark_sent(conn: sqlite3.Connection, arg: tuple[tuple[str, ...], float]) -> None:
    ids, now = arg
    conn.executemany(_MARK_SENT, [(now, message_id) for message_id in ids])


def outbox_mark_failed(conn: sqlite3.Connection, arg: tuple[str, str, str, float, bool]) -> None:
    message_id, owner, error, retry_at, dead = arg
    status = "dead" if dead else "pending"
    conn.execute(_MARK_FAILED, (status, retry_at, error, message_id, owner))


def outbox_release(conn: sqlite3.Connection, arg: tuple[tuple[str, ...], str, str | None]) -> None:
    ids, owner, error = arg
    conn.executemany(_RELEASE_MESSAGE, [(error, message_id, owner) for message_id in ids])


def outbox_retry(conn: sqlite3.Connection, arg: tuple[tuple[str, ...] | None, float]) -> int:
    ids, now = arg
    if ids is None:
        return int(conn.execute(_RETRY_DEAD, (now,)).rowcount)
    return sum(conn.execute(_RETRY_ONE, (now, message_id)).rowcount for message_id in ids)


def outbox_purge(conn: sqlite3.Connection, arg: tuple[str, float, tuple[str, ...] | None]) -> int:
    status, before, ids = arg
    if ids is None:
        return int(conn.execute(_PURGE, (status, before)).rowcount)
    return sum(conn.execute(_PURGE_ONE, (i, status, before)).rowcount for i in ids)


def frozen(ids: Sequence[str] | None) -> tuple[str, ...] | None:
    """``ids`` as a tuple for the writer thread (``None`` stays ``None``)."""
    return None if ids is None else tuple(ids)


def outbox_list(conn: sqlite3.Connection, arg: tuple[str | None, int]) -> list[OutboxRecord]:
    status, limit = arg
    params = (limit,) if status is None else (status, limit)
    return [outbox_from_row(row) for row in conn.execute(LIST_OUTBOX[status is not None], params)]
