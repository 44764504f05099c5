"""``statesaga ui``: serve the web inspector of a store's runs (needs the ``ui`` extra)."""

from __future__ import annotations

import ipaddress
import logging

import click

from ._common import shown, store_option

#: Hosts that only this machine can reach.
LOCAL_HOSTS = ("localhost",)


def _local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
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
            f"statesaga ui needs the ui extra ({error.name} is missing): "
            "pip install 'statesaga[ui]'"
        ) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    where = f"http://{host}:{port}/" if ":" not in host else f"http://[{host}]:{port}/"
    click.echo(f"statesaga ui: {shown(store_url)} at {where}")
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
                "warning: and with --allow-actions they can resume, signal and cancel runs: "
                "bind to 127.0.0.1 unless the network is trusted",
                err=True,
            )
    click.echo("actions are on" if allow_actions else "read only (no --allow-actions)")
    app = create_app(store_url, allow_actions=allow_actions)
    uvicorn.run(app, host=host, port=port, log_level="warning")
