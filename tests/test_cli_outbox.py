"""``statesaga outbox list|retry|purge`` and ``statesaga relay``."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from statesaga.cli import cli, main
from statesaga.messaging.message import Message
from statesaga.store import Commit, RunRecord, hide_password
from statesaga.store.sqlite import SQLiteStore


def outbox_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


async def _seed(path: Path) -> None:
    """Three messages: one sent, one dead, one pending (created a day and a half ago)."""
    old = time.time() - 1.5 * 86_400
    run = RunRecord("r1", "S", "m:S", "f", {}, "running", {}, 0, "w", 1e12, old, old)
    batch = [
        Message(f"r1:s:{n}", "orders", {"n": n}, key="k", saga_id="r1", step="s", created_at=old)
        for n in (1, 2, 3)
    ]
    async with SQLiteStore(path) as store:
        await store.commit(
            Commit("r1", 0, "w", "running", {}, [], [], old, create=run, messages=batch)
        )
        [first, second, _] = await store.outbox_claim("relay", time.time(), time.time() + 60)
        await store.outbox_mark_sent([first.id], time.time())
        await store.outbox_mark_failed(second.id, "relay", "refused", 0, dead=True)
        await store.outbox_release(["r1:s:3"], "relay")


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "runs.db"
    asyncio.run(_seed(path))
    return f"sqlite:///{path}"


def test_list_shows_messages_and_filters_by_status(db: str) -> None:
    """outbox list prints every message, newest first; --status keeps one kind."""
    listed = outbox_cli("outbox", "list", "--store", db)
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0].split()[:4] == ["MESSAGE", "TOPIC", "KEY", "STATUS"]
    assert [line.split()[0] for line in lines[1:]] == ["r1:s:3", "r1:s:2", "r1:s:1"]
    dead = outbox_cli("outbox", "list", "--status", "dead", "--payload", "--store", db)
    assert "refused" in dead.output
    assert '{"n": 2}' in dead.output
    assert "r1:s:1" not in dead.output


def test_retry_requeues_and_purge_deletes(db: str) -> None:
    """retry --dead makes dead messages pending; purge --sent deletes old sent ones."""
    assert outbox_cli("outbox", "retry", "--dead", "--store", db).output == "requeued 1 message\n"
    assert (
        "no dead messages" in outbox_cli("outbox", "list", "--status", "dead", "--store", db).output
    )
    assert outbox_cli("outbox", "retry", "nope", "--store", db).exit_code == 1
    purged = outbox_cli("outbox", "purge", "--sent", "--older-than", "1", "--store", db)
    assert purged.output == "deleted 1 sent message\n"
    kept = outbox_cli("outbox", "purge", "--sent", "--older-than", "2", "--store", db)
    assert kept.output == "deleted 0 sent messages\n"


def test_usage_mistakes_are_explained(db: str) -> None:
    """retry needs ids or --dead; purge needs --sent or --dead."""
    retry = outbox_cli("outbox", "retry", "--store", db)
    assert retry.exit_code == 2
    assert "MESSAGE_IDS or --dead" in retry.output
    purge = outbox_cli("outbox", "purge", "--older-than", "1", "--store", db)
    assert purge.exit_code == 2
    assert "--sent or --dead" in purge.output
    ageless = outbox_cli("outbox", "purge", "--dead", "--store", db)
    assert ageless.exit_code == 2
    assert "MESSAGE_IDS or --older-than DAYS" in ageless.output


def test_relay_once_publishes_what_is_due(db: str) -> None:
    """relay --once publishes the due messages in order and exits."""
    relayed = outbox_cli("relay", "--once", "--store", db, "--broker", "memory://")
    assert relayed.exit_code == 0, relayed.output
    assert relayed.output.splitlines()[-1] == "published 0 messages"  # r1:s:3 waits: key k dead
    outbox_cli("outbox", "retry", "--dead", "--store", db)
    relayed = outbox_cli("relay", "--once", "--store", db, "--broker", "memory://")
    assert relayed.output.splitlines()[-1] == "published 2 messages"


@pytest.mark.parametrize("days", ["inf", "Infinity", "nan", "1e400"])
def test_purge_refuses_days_that_are_no_number(db: str, days: str) -> None:
    """--older-than inf (or nan, or a number past any float) is a usage error: nothing goes."""
    purged = outbox_cli("outbox", "purge", "--dead", "--older-than", days, "--store", db)
    assert purged.exit_code == 2
    assert "is not a number of days: give a finite one" in purged.output
    assert "r1:s:2" in outbox_cli("outbox", "list", "--store", db).output


def test_relay_once_counts_the_messages_it_gave_up_on(tmp_path: Path) -> None:
    """relay --once says how many messages went dead, not only how many it published, and
    exits 1 (a cron job sees it): here RabbitMQ returns each (no queue is bound to their
    topic) and one attempt is allowed."""
    from _services import AMQP_URL, require

    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")
    path = tmp_path / "runs.db"
    topic = f"nobody-listens-{uuid.uuid4().hex}"

    async def seed() -> None:
        run = RunRecord("r1", "S", "m:S", "f", {}, "running", {}, 0, "w", 1e12, 1.0, 1.0)
        batch = [Message(f"r1:s:{n}", topic, {}, saga_id="r1", step="s") for n in range(7)]
        async with SQLiteStore(path) as store:
            await store.commit(
                Commit("r1", 0, "w", "running", {}, [], [], 1.0, create=run, messages=batch)
            )

    asyncio.run(seed())
    args = ("--store", f"sqlite:///{path}", "--broker", AMQP_URL, "--max-attempts", "1")
    relayed = outbox_cli("relay", "--once", *args)
    assert relayed.exit_code == 1, relayed.output
    assert relayed.output.splitlines()[-1].startswith(
        "published 0 messages; gave up on 7 (dead: `statesaga outbox list --status dead` shows"
    )
    dead = outbox_cli("outbox", "list", "--status", "dead", "--store", f"sqlite:///{path}")
    assert len(dead.output.splitlines()) == 8


def test_relay_once_fails_while_messages_wait_out_a_broker_outage(tmp_path: Path) -> None:
    """With the broker down, relay --once exits 1 on the round whose attempts fail, and on
    every later round while those messages wait for their backoff (none due then)."""
    from _services import free_port

    path = tmp_path / "runs.db"

    async def seed() -> None:
        run = RunRecord("r1", "S", "m:S", "f", {}, "running", {}, 0, "w", 1e12, 1.0, 1.0)
        batch = [Message(f"r1:s:{n}", "orders", {}, saga_id="r1", step="s") for n in range(2)]
        async with SQLiteStore(path) as store:
            await store.commit(
                Commit("r1", 0, "w", "running", {}, [], [], 1.0, create=run, messages=batch)
            )

    asyncio.run(seed())
    down = f"amqp://guest:guest@127.0.0.1:{free_port()}/"  # nothing listens there
    args = ("relay", "--once", "--store", f"sqlite:///{path}", "--broker", down)
    first = outbox_cli(*args)
    assert first.exit_code == 1, first.output
    assert "failed attempt" in first.output
    again = outbox_cli(*args)
    assert again.exit_code == 1, again.output
    assert again.output.splitlines()[-1] == (
        "published 0 messages; 2 messages failed before and wait for their backoff"
    )


def test_retry_names_the_ids_it_could_not_requeue(db: str) -> None:
    """retry of an unknown or sent id says which is which, a line each, and exits 1."""
    retried = outbox_cli("outbox", "retry", "r1:s:2", "r1:s:1", "nope", "--store", db)
    assert retried.exit_code == 1
    assert retried.stdout == "requeued 1 message\n"
    sent, unknown = retried.stderr.splitlines()
    assert sent.startswith("error: r1:s:1 not requeued: it was sent already, at ")
    assert unknown == f"error: nope not requeued: no such message in {db}"


@pytest.mark.parametrize(
    "args",
    [
        ("--sent", "--dead", "--older-than", "0"),
        ("--older-than", "0"),
        ("--sent", "--dead", "r1:s:1"),
    ],
    ids=["both", "neither", "both-with-ids"],
)
def test_purge_needs_exactly_one_of_sent_and_dead(db: str, args: tuple[str, ...]) -> None:
    """purge --sent --dead is a usage error, not a purge of whichever came last, with ids
    too; so is purge by age with neither."""
    purged = outbox_cli("outbox", "purge", *args, "--store", db)
    assert purged.exit_code == 2
    assert "--sent or --dead (one of the two)" in purged.output
    assert "r1:s:1" in outbox_cli("outbox", "list", "--store", db).output  # nothing deleted


def test_purge_by_id_deletes_those_dead_messages_and_names_the_others(db: str) -> None:
    """purge MESSAGE_IDS deletes those dead messages whatever their age, says which ids it
    did not delete (sent, pending or unknown) and exits 1; the dead message's key moves on."""
    purged = outbox_cli("outbox", "purge", "r1:s:2", "r1:s:1", "r1:s:3", "nope", "--store", db)
    assert purged.exit_code == 1
    assert purged.stdout == "deleted 1 dead message\n"
    sent, pending, unknown = purged.stderr.splitlines()
    assert sent.startswith("error: r1:s:1 not deleted: it was sent at ")
    assert sent.endswith(
        "it is not dead (sent messages are deleted with `statesaga outbox purge --sent`)"
    )
    assert pending == (
        "error: r1:s:3 not deleted: it is pending, still to be delivered (pending messages are "
        "never deleted)"
    )
    assert unknown == f"error: nope not deleted: no such message in {db}"
    listed = outbox_cli("outbox", "list", "--store", db).output.splitlines()
    assert [row.split()[0] for row in listed[1:]] == ["r1:s:3", "r1:s:1"]
    relayed = outbox_cli("relay", "--once", "--store", db, "--broker", "memory://")
    assert relayed.output.splitlines()[-1] == "published 1 message"  # r1:s:3: k is free


def test_purge_by_id_honours_older_than_and_sent(db: str) -> None:
    """With ids, --older-than still has to hold, and --sent deletes sent messages by id."""
    young = outbox_cli("outbox", "purge", "--dead", "--older-than", "2", "r1:s:2", "--store", db)
    assert young.exit_code == 1
    assert young.stdout == "deleted 0 dead messages\n"
    assert young.stderr.startswith(
        "error: r1:s:2 not deleted: it is not older than 2 days (created "
    )
    dead = outbox_cli("outbox", "purge", "--sent", "r1:s:2", "--store", db)
    assert "error: r1:s:2 not deleted: it is dead, not sent" in dead.stderr
    old = outbox_cli("outbox", "purge", "--older-than", "1", "r1:s:2", "r1:s:2", "--store", db)
    assert (old.exit_code, old.output) == (0, "deleted 1 dead message\n")
    sent = outbox_cli("outbox", "purge", "--sent", "r1:s:1", "--store", db)
    assert (sent.exit_code, sent.output) == (0, "deleted 1 sent message\n")
    listed = outbox_cli("outbox", "list", "--store", db).output.splitlines()
    assert [row.split()[0] for row in listed[1:]] == ["r1:s:3"]


# -- a store that does not exist ---------------------------------------------------------------


def failing(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``statesaga ARGS`` as the console script does; assert exit code 1; its stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def assert_no_store_error(stderr: str, url: str) -> None:
    """``stderr`` is one line: the error that there is no store at ``url``."""
    [line] = stderr.splitlines()
    assert line.startswith(f"error: no statesaga store at {url} (")
    assert "Traceback" not in stderr


def test_list_of_a_missing_store_is_an_error_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """outbox list on a missing SQLite file: one-line error, exit 1, no file made."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert_no_store_error(failing(capsys, "outbox", "list", "--store", url), url)
    assert list(tmp_path.iterdir()) == []


def test_retry_on_a_missing_store_is_an_error_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """outbox retry on a missing SQLite file: one-line error, exit 1, no file made."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert_no_store_error(failing(capsys, "outbox", "retry", "--dead", "--store", url), url)
    assert list(tmp_path.iterdir()) == []


def test_purge_on_a_missing_store_is_an_error_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """outbox purge on a missing SQLite file: one-line error, exit 1, no file made."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    args = ("outbox", "purge", "--sent", "--older-than", "1", "--store", url)
    assert_no_store_error(failing(capsys, *args), url)
    assert list(tmp_path.iterdir()) == []


def test_list_of_a_missing_postgres_schema_is_an_error_and_creates_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """outbox list on a PostgreSQL schema that does not exist: one-line error, no schema made."""
    from test_store_postgres import URL, drop_schema, new_schema, require_server, schema_exists

    require_server()
    name = new_schema()
    try:
        url = f"{URL}{'&' if '?' in URL else '?'}schema={name}"
        stderr = failing(capsys, "outbox", "list", "--store", url)
        assert_no_store_error(stderr, hide_password(URL))
        assert f"schema '{name}' does not exist" in stderr
        assert not schema_exists(name)
    finally:
        drop_schema(name)
