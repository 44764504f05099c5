"""PostgreSQL statements for one schema."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import TupleRow

from ..vocabulary import CANCEL_EVENT, TERMINAL
from ._rows import OUTBOX_COLUMNS, list_runs_queries

Conn = psycopg.AsyncConnection[TupleRow]
Row = tuple[Any, ...]
#: A statement's text and its parameters.
Statement = tuple[str, Any]

_TERMINAL_SQL = "(" + ", ".join(f"'{status}'" for status in sorted(TERMINAL)) + ")"
#: Unfinished runs that are not waiting: what workers poll (the condition of a partial index).
_RUNNABLE = _TERMINAL_SQL[:-1] + ", 'waiting')"
_RUN_COLUMNS = (
    "run_id, saga, saga_path, fingerprint, input::text, status, config::text, version,"
    " lease_owner, lease_expires, created_at, updated_at, failed_step, error, wake_at"
)
_OUTBOX_SELECT = OUTBOX_COLUMNS.replace("payload", "payload::text").replace(
    "headers", "headers::text"
)


class Queries:
    """Every statement, with the tables qualified by one schema."""

    def __init__(self, schema: str) -> None:
        # Quoted, so any name works; ``%`` doubled because psycopg reads it as a placeholder.
        s = '"' + schema.replace('"', '""').replace("%", "%%") + '"'
        runs, steps, history, meta, outbox, signals = (
            f"{s}.statesaga_{name}"
            for name in ("runs", "steps", "history", "meta", "outbox", "signals")
        )
        self.schema = (
            f"CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL)",
            # COLLATE "C" on ids: ordered by code point, like the other stores, whatever the
            # database's locale.
            f"CREATE TABLE IF NOT EXISTS {runs} ("
            ' run_id text COLLATE "C" PRIMARY KEY, saga text NOT NULL, saga_path text NOT NULL,'
            " fingerprint text NOT NULL, input json NOT NULL, status text NOT NULL,"
            " config json NOT NULL, version bigint NOT NULL, lease_owner text,"
            " lease_expires double precision, created_at double precision NOT NULL,"
            " updated_at double precision NOT NULL, failed_step text, error text,"
            " wake_at double precision)",
            f"CREATE INDEX IF NOT EXISTS statesaga_runs_by_status ON {runs} (status, created_at)",
            f"CREATE INDEX IF NOT EXISTS statesaga_runs_by_saga ON {runs} (saga, created_at)",
            # Pages of runs, newest first, however deep (``browse``'s keyset pages).
            f"CREATE INDEX IF NOT EXISTS statesaga_runs_by_created ON {runs} (created_at, run_id)",
            # What the recovery loop scans: stays small however many finished runs pile up,
            # and however many runs sleep in a wait ...
            f"CREATE INDEX IF NOT EXISTS statesaga_runs_runnable ON {runs} (created_at, run_id)"
            f" WHERE status NOT IN {_RUNNABLE}",
            # ... which are found by when they wake; and runs held by a lease, by when it runs
            # out (what a dead driver left is taken over first).
            f"CREATE INDEX IF NOT EXISTS statesaga_runs_waking ON {runs} (wake_at, run_id)"
            " WHERE status = 'waiting'",
            f"CREATE INDEX IF NOT EXISTS statesaga_runs_leased ON {runs} (lease_expires, run_id)"
            f" WHERE status NOT IN {_RUNNABLE} AND lease_owner IS NOT NULL",
            f"CREATE TABLE IF NOT EXISTS {signals} ("
            ' run_id text COLLATE "C" NOT NULL, signal_id text COLLATE "C" NOT NULL,'
            ' event text COLLATE "C" NOT NULL, payload json NOT NULL,'
            " at double precision NOT NULL, PRIMARY KEY (run_id, signal_id),"
            " UNIQUE (run_id, event))",
            f"CREATE TABLE IF NOT EXISTS {steps} ("
            ' run_id text COLLATE "C" NOT NULL, step text COLLATE "C" NOT NULL,'
            " phase text NOT NULL, attempt bigint NOT NULL, result json, error text,"
            " PRIMARY KEY (run_id, step))",
            f"CREATE TABLE IF NOT EXISTS {history} ("
            ' run_id text COLLATE "C" NOT NULL, seq bigint NOT NULL, "trigger" text NOT NULL,'
            " source text NOT NULL, dest text NOT NULL, at double precision NOT NULL,"
            " attempt bigint NOT NULL, error text, PRIMARY KEY (run_id, seq))",
            f"CREATE TABLE IF NOT EXISTS {outbox} ("
            " seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            ' id text COLLATE "C" NOT NULL UNIQUE, run_id text COLLATE "C" NOT NULL,'
            ' step text NOT NULL, topic text NOT NULL, key text COLLATE "C",'
            " payload json NOT NULL, headers json NOT NULL, created_at double precision NOT NULL,"
            " status text NOT NULL, attempts bigint NOT NULL,"
            " retry_at double precision NOT NULL, claim_owner text,"
            " claim_until double precision, sent_at double precision, last_error text)",
            f"CREATE INDEX IF NOT EXISTS statesaga_outbox_by_status ON {outbox} (status, seq)",
            f"CREATE INDEX IF NOT EXISTS statesaga_outbox_by_run ON {outbox} (run_id, seq)",
            # What the per-key order checks look at: stays small however many sent messages
            # pile up.
            "CREATE INDEX IF NOT EXISTS statesaga_outbox_unsent_keys"
            f" ON {outbox} (key, seq) WHERE status <> 'sent'",
            f"INSERT INTO {meta} (key, value) VALUES ('schema_version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        # What brings a schema of each older version to the next; ``schema`` then adds what
        # is new.
        self.migrations = {
            1: (
                f"ALTER TABLE {runs} ADD COLUMN IF NOT EXISTS wake_at double precision",
                # Replaced by statesaga_runs_runnable, which leaves waiting runs out.
                f"DROP INDEX IF EXISTS {s}.statesaga_runs_unfinished",
            ),
        }
        self.create_schema = f"CREATE SCHEMA IF NOT EXISTS {s}"
        self.version = f"SELECT value FROM {meta} WHERE key = 'schema_version'"
        self.create = (
            f"INSERT INTO {runs} (run_id, saga, saga_path, fingerprint, input, status, config,"
            " version, lease_owner, lease_expires, created_at, updated_at, failed_step, error,"
            " wake_at) VALUES (%s, %s, %s, %s, %s::json, %s, %s::json, %s::bigint, %s,"
            " %s::float8, %s::float8, %s::float8, %s, %s, %s::float8)"
            " ON CONFLICT (run_id) DO NOTHING RETURNING true"
        )
        # One statement for any number of commits (of distinct runs): the step and history
        # rows of a commit are written only if its guarded UPDATE matched, so a stale commit
        # writes nothing and raises nothing, and the others still apply. ``unless`` is the
        # JSON array of a commit's ``unless_signals`` (NULL without): a signal of one of
        # them makes its UPDATE match nothing too.
        commit = (
            "WITH x AS (SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::text[],"
            " %b::text[], %b::float8[], %b::text[], %b::text[], %b::float8[], %b::bool[],"
            " %b::text[]) AS x(run_id, version, owner, status, config, updated_at, failed_step,"
            " error, wake_at, release, unless)),"
            f" run AS (UPDATE {runs} AS r SET status = x.status, config = x.config::json,"
            " version = r.version + 1, updated_at = x.updated_at, failed_step = x.failed_step,"
            " error = x.error, wake_at = x.wake_at,"
            " lease_owner = CASE WHEN x.release THEN NULL ELSE r.lease_owner END,"
            " lease_expires = CASE WHEN x.release THEN NULL ELSE r.lease_expires END"
            " FROM x WHERE r.run_id = x.run_id"
            " AND r.version = x.version AND r.lease_owner = x.owner AND (x.unless IS NULL OR"
            f" NOT EXISTS (SELECT 1 FROM {signals} g WHERE g.run_id = x.run_id"
            " AND g.event IN (SELECT json_array_elements_text(x.unless::json))))"
            " RETURNING r.run_id),"
            f" steps AS (INSERT INTO {steps} (run_id, step, phase, attempt, result, error)"
            " SELECT s.run_id, s.step, s.phase, s.attempt, s.result::json, s.error"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[],"
            " %b::text[]) AS s(run_id, step, phase, attempt, result, error)"
            " WHERE s.run_id IN (SELECT run_id FROM run)"
            " ON CONFLICT (run_id, step) DO UPDATE SET phase = EXCLUDED.phase,"
            " attempt = EXCLUDED.attempt, result = EXCLUDED.result, error = EXCLUDED.error),"
            f' history AS (INSERT INTO {history} (run_id, seq, "trigger", source, dest, at,'
            " attempt, error) SELECT h.* FROM unnest(%b::text[], %b::bigint[], %b::text[],"
            " %b::text[], %b::text[], %b::float8[], %b::bigint[], %b::text[])"
            " AS h(run_id, seq, trig, source, dest, at, attempt, error)"
            " WHERE h.run_id IN (SELECT run_id FROM run))"
        )
        self.commit = commit + " SELECT run_id FROM run"
        # The same with outbox rows, written only with their commit. A message is claimed for
        # its commit's owner unless another unsent message of its key is not being sent by
        # that owner right now (it would overtake that one); the claimed ids are returned.
        # A new message is due at once (retry_at 0): not at its created_at, which comes from
        # the emitting worker's clock and would hold its key back if that clock ran ahead.
        self.commit_outbox = (
            commit
            + f", ob AS (INSERT INTO {outbox} (id, run_id, step, topic, key, payload, headers,"
            " created_at, status, attempts, retry_at, claim_owner, claim_until)"
            " SELECT m.id, m.run_id, m.step, m.topic, m.key, m.payload::json, m.headers::json,"
            " m.created_at, 'pending', 0, 0, c.owner, c.until"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
            " %b::text[], %b::text[], %b::float8[], %b::text[], %b::float8[], %b::float8[])"
            " WITH ORDINALITY AS m(id, run_id, step, topic, key, payload, headers, created_at,"
            " owner, until, now, n)"
            " CROSS JOIN LATERAL (SELECT CASE WHEN m.until IS NOT NULL AND (m.key IS NULL OR"
            f" NOT EXISTS (SELECT 1 FROM {outbox} o WHERE o.key = m.key AND o.status <> 'sent'"
            " AND (COALESCE(o.claim_owner, '') <> m.owner OR COALESCE(o.claim_until, 0) < m.now)"
            ")) THEN true END AS take) t"
            " CROSS JOIN LATERAL (SELECT CASE WHEN t.take THEN m.owner END AS owner,"
            " CASE WHEN t.take THEN m.until END AS until) c"
            " WHERE m.run_id IN (SELECT run_id FROM run) ORDER BY m.n"
            " ON CONFLICT (id) DO NOTHING RETURNING id, run_id, claim_owner IS NOT NULL AS took)"
            " SELECT r.run_id, ARRAY(SELECT ob.id FROM ob WHERE ob.run_id = r.run_id AND ob.took)"
            " FROM run r"
        )
        self.acquire = (
            f"UPDATE {runs} SET lease_owner = %(owner)s, lease_expires = %(expires)s::float8,"
            " version = version + 1"
            " WHERE run_id = %(run_id)s"
            " AND (lease_owner IS NULL OR lease_owner = %(owner)s"
            " OR COALESCE(lease_expires, 0) < %(now)s::float8) RETURNING true"
        )
        self.renew = (
            f"UPDATE {runs} SET lease_expires = %s::float8"
            " WHERE run_id = ANY(%b::text[]) AND lease_owner = %s RETURNING run_id"
        )
        self.release = (
            f"UPDATE {runs} SET lease_owner = NULL, lease_expires = NULL"
            " WHERE run_id = %s AND lease_owner = %s"
        )
        self.leases = (
            f"SELECT run_id, version, lease_owner, ARRAY(SELECT event FROM {signals} g"
            f" WHERE g.run_id = r.run_id) FROM {runs} r WHERE run_id = ANY(%s)"
        )
        # Taken before commits guarded by signals, in a statement of its own: the commit's
        # statement then starts after any signal stored meanwhile has committed, and sees it
        # (a statement sees what committed before it started, not what it waited for).
        self.lock_runs = (
            f"SELECT 1 FROM {runs} WHERE run_id = ANY(%s::text[]) ORDER BY run_id FOR UPDATE"
        )
        self.run = f"SELECT {_RUN_COLUMNS} FROM {runs} WHERE run_id = %s"
        self.steps = (
            f"SELECT step, phase, attempt, result::text, error FROM {steps}"
            " WHERE run_id = %s ORDER BY step"
        )
        self.history = (
            f'SELECT seq, "trigger", source, dest, at, attempt, error FROM {history}'
            " WHERE run_id = %s ORDER BY seq"
        )
        self.signals = (
            f"SELECT signal_id, event, payload::text, at FROM {signals} WHERE run_id = %s"
        )
        # Runs a dead driver left (their lease ran out), soonest run out first, then runnable
        # runs nobody holds and waiting runs that are due, oldest first: a slot that frees
        # goes to a run in flight before one not started. Each through its own partial
        # index, so finished runs and runs asleep in a wait cost the poll nothing.
        free = "(lease_owner IS NULL OR COALESCE(lease_expires, 0) < %(now)s::float8)"
        self.unfinished = (
            f"SELECT run_id FROM ((SELECT run_id, 0 AS later, lease_expires AS k FROM {runs}"
            f" WHERE status NOT IN {_RUNNABLE} AND lease_owner IS NOT NULL"
            " AND (lease_expires < %(now)s::float8 OR lease_expires IS NULL)"
            " ORDER BY lease_expires, run_id"
            " LIMIT %(limit)s)"
            f" UNION ALL (SELECT run_id, 1, created_at FROM {runs}"
            f" WHERE status NOT IN {_RUNNABLE} AND lease_owner IS NULL"
            " ORDER BY created_at, run_id LIMIT %(limit)s)"
            f" UNION ALL (SELECT run_id, 1, created_at FROM {runs} WHERE status = 'waiting'"
            f" AND wake_at <= %(now)s::float8 AND {free}"
            " ORDER BY created_at, run_id LIMIT %(limit)s)) u"
            " ORDER BY later, k, run_id LIMIT %(limit)s"
        )
        self.waiting = (
            f"SELECT {_RUN_COLUMNS} FROM {runs} WHERE status = 'waiting'"
            " ORDER BY wake_at NULLS LAST, created_at, run_id LIMIT %s"
        )
        # The waiting runs alone, through statesaga_runs_waking: sleeping runs cost a scrape.
        self.count_waiting = (
            f"SELECT saga, count(*) FROM {runs} WHERE status = 'waiting' GROUP BY saga"
        )
        # add_signal: the run row locked first, so it is serialised with the run's commits.
        self.signal_run = f"SELECT status, wake_at FROM {runs} WHERE run_id = %s FOR UPDATE"
        self.same_signal = (
            f"SELECT signal_id, event, payload::text, at FROM {signals}"
            " WHERE run_id = %s AND (signal_id = %s OR event = %s"
            f" OR event = '{CANCEL_EVENT}')"
        )
        self.signal_phase = f"SELECT phase FROM {steps} WHERE run_id = %s AND step = %s"
        self.insert_signal = (
            f"INSERT INTO {signals} (run_id, signal_id, event, payload, at)"
            " VALUES (%s, %s, %s, %s::json, %s::float8)"
        )
        self.wake = f"UPDATE {runs} SET wake_at = %s::float8 WHERE run_id = %s"
        self.leased = (
            f"SELECT {_RUN_COLUMNS} FROM {runs} WHERE status NOT IN {_TERMINAL_SQL}"
            " AND lease_owner IS NOT NULL AND lease_expires >= %s::float8"
            " ORDER BY lease_expires, run_id LIMIT %s"
        )
        self.list_runs = list_runs_queries(f"SELECT {_RUN_COLUMNS} FROM {runs}", "%s")
        # The browsing reads (``_pg_browse``): the runs table, its columns, one run's messages.
        self.runs = runs
        self.select_runs = f"SELECT {_RUN_COLUMNS} FROM {runs}"
        self.outbox_of_run = (
            f"SELECT {_OUTBOX_SELECT} FROM {outbox} WHERE run_id = %s ORDER BY seq LIMIT %s"
        )
        # Claims are serialised by an advisory lock (see PostgresStore.outbox_claim); the row
        # conditions are those of the SQLite store.
        # Each key's state is found in one pass over the unsent messages, not once per
        # candidate: with a backlog of one key (a long broker outage) a per-candidate look
        # at the key makes every claim quadratic in the backlog.
        self.outbox_claim = (
            "WITH k AS (SELECT key,"
            " bool_or(COALESCE(claim_until, 0) >= %(now)s::float8) AS busy,"
            " min(seq) FILTER (WHERE status = 'dead' OR retry_at > %(now)s::float8) AS stop"
            f" FROM {outbox} WHERE status <> 'sent' AND key IS NOT NULL GROUP BY key),"
            f" c AS (SELECT r.seq FROM {outbox} r LEFT JOIN k ON k.key = r.key"
            " WHERE r.status = 'pending' AND r.retry_at <= %(now)s::float8"
            " AND COALESCE(r.claim_until, 0) < %(now)s::float8 AND (r.key IS NULL"
            " OR (NOT k.busy AND (k.stop IS NULL OR k.stop > r.seq)))"
            " ORDER BY r.seq LIMIT %(limit)s)"
            f" UPDATE {outbox} AS u SET claim_owner = %(owner)s, claim_until = %(until)s::float8"
            " FROM c WHERE u.seq = c.seq RETURNING "
            + ", ".join(f"u.{column.strip()}" for column in _OUTBOX_SELECT.split(","))
        )
        self.outbox_mark_sent = (
            f"UPDATE {outbox} SET status = 'sent', sent_at = %s::float8, claim_owner = NULL,"
            " claim_until = NULL WHERE id = ANY(%s::text[]) AND status = 'pending'"
        )
        self.outbox_mark_failed = (
            f"UPDATE {outbox} SET status = %s, attempts = attempts + 1, retry_at = %s::float8,"
            " last_error = %s, claim_owner = NULL, claim_until = NULL"
            " WHERE id = %s AND claim_owner = %s AND status = 'pending'"
        )
        self.outbox_release = (
            f"UPDATE {outbox} SET claim_owner = NULL, claim_until = NULL,"
            " last_error = COALESCE(%s, last_error)"
            " WHERE id = ANY(%s::text[]) AND claim_owner = %s AND status = 'pending'"
        )
        self.outbox_retry_dead = (
            f"UPDATE {outbox} SET status = 'pending', attempts = 0, retry_at = %s::float8"
            " WHERE status = 'dead' RETURNING 1"
        )
        self.outbox_retry = (
            f"UPDATE {outbox} SET status = 'pending', attempts = 0, retry_at = %s::float8"
            " WHERE id = ANY(%s::text[]) AND status <> 'sent' RETURNING 1"
        )
        self.outbox_purge = (
            f"DELETE FROM {outbox} WHERE status = %s AND created_at < %s::float8 RETURNING 1"
        )
        self.outbox_purge_ids = (
            f"DELETE FROM {outbox} WHERE status = %s AND created_at < %s::float8"
            " AND id = ANY(%s::text[]) RETURNING 1"
        )
        self.outbox_list = {
            False: f"SELECT {_OUTBOX_SELECT} FROM {outbox} ORDER BY seq DESC LIMIT %s",
            True: f"SELECT {_OUTBOX_SELECT} FROM {outbox} WHERE status = %s"
            " ORDER BY seq DESC LIMIT %s",
        }
