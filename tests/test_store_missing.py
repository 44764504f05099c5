"""A store that does not exist: ``StoreNotFound``, and the read-only commands that report it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_orders_saga
from test_store_contract import make_run

from statesaga.cli import main
from statesaga.store import MemoryStore, StoreError, StoreNotFound, store_from_url


@pytest.fixture
def saga_file(tmp_path: Path) -> Path:
    """A saga file in a folder of its own, with nothing else in it."""
    folder = tmp_path / "sagas"
    folder.mkdir()
    return write_orders_saga(folder)


def diagram_error(capsys: pytest.CaptureFixture[str], saga_file: Path, url: str) -> str:
    """The one error line of ``statesaga diagram --run`` on ``url``, which must exit 1."""
    output = saga_file.parent / "run.dot"
    args = ["diagram", f"{saga_file}:Orders", "-o", str(output), "--run", "r1", "--store", url]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert not output.exists()
    return line


def test_store_not_found_says_where_what_and_what_to_do() -> None:
    """StoreNotFound is a StoreError naming the URL (password hidden), the reason and a remedy."""
    error = StoreNotFound("postgresql://app:s3cret@db/prod", "schema 'x' does not exist")
    assert isinstance(error, StoreError)
    assert (error.url, error.reason) == (
        "postgresql://app:***@db/prod",
        "schema 'x' does not exist",
    )
    assert str(error) == (
        "no statesaga store at postgresql://app:***@db/prod (schema 'x' does not exist): check "
        "the store URL (--store or $STATESAGA_STORE); runs create the store when they start"
    )


def test_store_not_found_for_something_else_does_not_promise_a_store() -> None:
    """A location holding something other than a store is named as such, not as one to create."""
    error = StoreNotFound("sqlite:///app.db", "the file is not a SQLite database", foreign=True)
    assert str(error).endswith("it names something that is not a statesaga store")
    assert "runs create" not in str(error)


async def test_memory_store_opens_without_create() -> None:
    """memory:// keeps nothing outside its process: open(create=False) opens it, empty."""
    store = store_from_url("memory://")
    assert isinstance(store, MemoryStore)
    await store.open(create=False)
    assert await store.list_runs() == []
    await store.create(make_run())
    assert [run.run_id for run in await store.list_runs()] == ["r1"]


def test_diagram_run_of_a_missing_sqlite_store_is_an_error_and_creates_nothing(
    saga_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """diagram --run on a missing SQLite file: one-line error, exit 1, no file made."""
    url = f"sqlite:///{saga_file.parent / 'runs.db'}"
    line = diagram_error(capsys, saga_file, url)
    assert line.startswith(f"error: no statesaga store at {url} (no such file): ")
    assert sorted(path.name for path in saga_file.parent.iterdir()) == ["orders.py"]


def test_diagram_run_of_another_apps_database_is_an_error_and_leaves_it_alone(
    saga_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """diagram --run on a SQLite file without statesaga's tables: one-line error, file unchanged."""
    from test_store_sqlite import digest, foreign_database

    path = saga_file.parent / "app.db"
    foreign_database(path)
    before = digest(path)
    line = diagram_error(capsys, saga_file, f"sqlite:///{path}")
    assert line.startswith(f"error: no statesaga store at sqlite:///{path} (")
    assert "no statesaga tables" in line
    assert digest(path) == before
    assert sorted(p.name for p in saga_file.parent.iterdir()) == ["app.db", "orders.py"]


def test_diagram_run_of_a_missing_postgres_schema_is_an_error_and_creates_nothing(
    saga_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """diagram --run on a PostgreSQL schema that does not exist: one-line error, no schema."""
    from test_store_postgres import URL, drop_schema, new_schema, require_server, schema_exists

    require_server()
    name = new_schema()
    try:
        url = f"{URL}{'&' if '?' in URL else '?'}schema={name}"
        line = diagram_error(capsys, saga_file, url)
        assert line.startswith("error: no statesaga store at ")
        assert f"(schema '{name}' does not exist)" in line
        assert not schema_exists(name)
    finally:
        drop_schema(name)
