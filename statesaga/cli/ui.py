"""``statesaga ui``: serve the web inspector of a store's runs (needs the ``ui`` extra)."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

import click

from ..errors import StoreError
from ..store import DEFAULT_URL, ENV_VAR, hide_password, store_from_url
from ._common import _store_url, shown

#: Hosts that only this machine can reach.
LOCAL_HOSTS = ("localhost",)

#: The store URLs the inspector opens, as its messages name them.
INSPECTABLE = (
    "sqlite:///path/to/file.db (relative to the current folder; sqlite:////abs/path.db for an "
    "absolute path) or postgresql://user@host/db[?schema=NAME]"
)

#: Installing the inspector's libraries, from PyPI or from a checkout of the repository.
INSTALL = "pip install 'statesaga[ui]' (from a checkout of the repository: pip install -e '.[ui]')"


def _local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _inspectable(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A ``--store`` callback: a URL the inspector cannot open is a usage error (exit code 2)
    at startup, rather than a server that answers every request with an error."""
    value = _store_url(ctx, param, value)
    scheme, sep, _ = value.partition("://")
    if sep and scheme.lower() == "memory":
        raise click.BadParameter(
            "memory:// is a store that lives inside one process: the inspector would make a "
            f"new, empty one of its own, with nothing to inspect. Give the store your runs are "
            f"kept in: {INSPECTABLE}"
        )
    if not sep:
        hint = f" (for a SQLite file: sqlite:///{value})"
        raise click.BadParameter(
            f"{hide_password(value)!r} is not a store URL{hint}: give {INSPECTABLE}"
        )
    if scheme.lower() not in ("sqlite", "postgresql", "postgres"):
        raise click.BadParameter(
            f"{hide_password(value)!r}: unknown store URL scheme {scheme!r}: give {INSPECTABLE}"
        )
    try:
        store_from_url(value)  # made, not opened: only the URL is checked here
    except StoreError as error:
        raise click.BadParameter(f"{error} (the inspector opens {INSPECTABLE})") from None
    return value


inspected_store_option = click.option(
    "--store",
    "store_url",
    envvar=ENV_VAR,
    default=DEFAULT_URL,
    show_default=True,
    callback=_inspectable,
    help=f"The store to inspect (sqlite:///file.db, postgresql://...); ${ENV_VAR} sets it.",
)


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on ``host`` and ``port`` (0: a free port the system picks), or a
    usage error that says why it cannot be had and what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise _bind_error(host, port, error) from None
    sock.set_inheritable(True)
    return sock


def _bind_error(host: str, port: int, error: OSError) -> click.ClickException:
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if error.errno == errno.EADDRINUSE:
        return click.BadParameter(
            f"{where} is already in use (another server listens there): choose another "
            "--port, or --port 0 for any free one",
            param_hint="'--port'",
        )
    if error.errno == errno.EACCES:
        return click.BadParameter(
            f"not allowed to listen on {where} (ports below 1024 need privileges): choose "
            "another --port",
            param_hint="'--port'",
        )
    reason = error.strerror or str(error)
    return click.BadParameter(
        f"cannot listen on {where} ({reason}): give an address of this machine, such as "
        "127.0.0.1 (the default) or 0.0.0.0 for all of its addresses",
        param_hint="'--host'",
    )


def _address(sock: socket.socket) -> str:
    """The URL ``sock`` is bound to (the port the system picked for port 0)."""
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}/" if ":" not in host else f"http://[{host}]:{port}/"


@click.command()
@inspected_store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free one; the banner says which).",
)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Let the pages resume, signal and cancel runs and requeue or purge messages.",
)
def ui(store_url: str, host: str, port: int, allow_actions: bool) -> None:
    """Serve a web inspector of the runs in the store: runs, their diagrams and paths,
    sagas, the outbox, and a JSON API under /api/.

    It reads the store and never creates one. Without --allow-actions it changes nothing.
    """
    try:
        import uvicorn

        from ..ui.app import create_app
    except ImportError as error:
        raise click.ClickException(
            f"statesaga ui needs the ui extra ({error.name} is missing): {INSTALL}"
        ) from None
    sock = bind(host, port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(f"statesaga ui: {shown(store_url)} at {_address(sock)}")
    if _local(host):
        click.echo(f"listening on {host} only: reachable from this machine alone")
    else:
        click.echo(
            f"warning: listening on {host}: anyone who can reach it can read every run's input "
            "and results (there is no login)",
            err=True,
        )
        if allow_actions:
            click.echo(
                "warning: and with --allow-actions they can resume, signal and cancel runs and "
                "requeue or purge outbox messages: bind to 127.0.0.1 unless the network is "
                "trusted",
                err=True,
            )
    click.echo("actions are on" if allow_actions else "read only (no --allow-actions)")
    app = create_app(store_url, allow_actions=allow_actions)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
