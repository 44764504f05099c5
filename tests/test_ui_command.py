"""The ``statesaga ui`` command: which store URLs it takes, the address it binds before it says
where it listens, its warnings, and what it says without the ``ui`` extra."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner, Result

from statesaga.cli import cli

#: A password the banner must never show (no server is reached: only the URL is looked at).
SECRET = "hunter2secret"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The address of the socket each ``statesaga ui`` run in this process handed its server;
    the server itself returns at once (the socket is real, bound and listening)."""
    calls: list[tuple[str, int]] = []

    def run(server: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
        assert sockets is not None, "the server was not handed the socket bound at start"
        [sock] = sockets
        host, port = sock.getsockname()[:2]
        calls.append((host, port))
        # Listening once the banner is out: a connection is accepted by the kernel.
        socket.create_connection(("127.0.0.1", port), 2).close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    return calls


def ui(*args: str) -> Result:
    return CliRunner().invoke(cli, ["ui", *args])


def banner_port(output: str) -> int:
    found = re.search(r"^statesaga ui: .* at http://127\.0\.0\.1:(\d+)/$", output, re.MULTILINE)
    assert found is not None, output
    return int(found.group(1))


def test_command_says_where_it_listens_and_warns_off_loopback(
    served: list[tuple[str, int]],
) -> None:
    """`statesaga ui` names the store (no password) and warns when bound beyond loopback,
    naming every action that --allow-actions lets anyone take."""
    url = f"postgresql://app:{SECRET}@127.0.0.1/test"
    local = ui("--store", url, "--port", "0")
    assert local.exit_code == 0, local.output
    assert "127.0.0.1 only" in local.output
    assert SECRET not in local.output
    wide = ui("--store", url, "--host", "0.0.0.0", "--port", "0", "--allow-actions")
    assert wide.exit_code == 0, wide.output
    assert wide.output.count("warning:") == 2
    for action in ("resume", "signal", "cancel", "requeue", "purge"):
        assert action in wide.output.split("warning:")[2], action
    assert [host for host, _ in served] == ["127.0.0.1", "0.0.0.0"]


def test_port_0_is_shown_as_the_port_bound(served: list[tuple[str, int]]) -> None:
    """With --port 0 the banner shows the port the system picked, which the server serves on."""
    result = ui("--store", "sqlite:///any.db", "--port", "0")
    assert result.exit_code == 0, result.output
    [(_, bound)] = served
    port = banner_port(result.output)
    assert port != 0
    assert port == bound


def test_a_port_in_use_is_a_usage_error_before_the_banner(
    served: list[tuple[str, int]],
) -> None:
    """A port another server listens on is refused at once (exit code 2), saying what to do,
    and the banner never claims the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ui("--store", "sqlite:///any.db", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{port} is already in use" in result.output
    assert "another --port" in result.output
    assert "statesaga ui:" not in result.output
    assert "Errno" not in result.output
    assert served == []


def test_an_address_not_of_this_machine_is_a_usage_error(
    served: list[tuple[str, int]],
) -> None:
    """A --host this machine has no address of is refused at start, naming it."""
    result = ui("--store", "sqlite:///any.db", "--host", "192.0.2.1", "--port", "0")
    assert result.exit_code == 2, result.output
    assert "cannot listen on 192.0.2.1:0" in result.output
    assert "--host" in result.output
    assert served == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://x/y", "'mysql://x/y': unknown store URL scheme 'mysql'"),
        ("sqlite://", "names no file"),
        ("orders.db", "'orders.db' is not a store URL (for a SQLite file: sqlite:///orders.db)"),
        ("memory://", "memory:// is a store that lives inside one process"),
        ("MEMORY://", "nothing to inspect"),
    ],
)
def test_a_store_url_it_cannot_inspect_is_a_usage_error(
    served: list[tuple[str, int]], url: str, says: str
) -> None:
    """A URL statesaga cannot open, or a memory store (a new, empty one of the inspector's
    own), is refused at start (exit code 2) with the URLs that work; no server starts."""
    result = ui("--store", url, "--port", "0")
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())
    if "memory" not in url.lower():  # it is not offered
        assert "memory://" not in result.output
    assert "sqlite:///path/to/file.db" in result.output
    assert "postgresql://user@host/db" in result.output
    assert "statesaga ui:" not in result.output
    assert served == []


def test_the_store_from_the_environment_is_checked_too(
    served: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """$STATESAGA_STORE goes through the same check as --store."""
    monkeypatch.setenv("STATESAGA_STORE", "memory://")
    result = ui("--port", "0")
    assert result.exit_code == 2
    assert "nothing to inspect" in " ".join(result.output.split())


def test_help_offers_only_stores_it_can_inspect() -> None:
    """--help names SQLite and PostgreSQL URLs, not memory://."""
    result = ui("--help")
    assert result.exit_code == 0
    assert "sqlite:///" in result.output
    assert "postgresql://" in result.output
    assert "memory://" not in result.output


def test_command_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without starlette or uvicorn the command says to install the ui extra, from PyPI or
    from a checkout of the repository."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = ui("--store", "sqlite:///x.db")
    assert result.exit_code == 1
    assert "pip install 'statesaga[ui]'" in result.output
    assert "pip install -e '.[ui]'" in result.output


@pytest.mark.slow
def test_the_server_serves_at_the_address_its_banner_shows(tmp_path: Path) -> None:
    """`statesaga ui --port 0` as users start it: the banner's address answers."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "statesaga.cli", "ui", "--store", "sqlite:///none.db"]
    server = subprocess.Popen(
        [*command, "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        port = banner_port(first)
        deadline = time.monotonic() + 20
        while True:
            try:
                answer: Any = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=5)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "nothing answered at the banner's address"
                time.sleep(0.05)
        assert answer.status_code == 503  # no store there yet: the page says so
        assert "none.db" in answer.json()["detail"]
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()
