"""The inspector's pages and JSON API: each reads through ``queries`` and answers with a
template or JSON. Errors are answered by ``app``'s handlers (a missing run is a 404, a store
that cannot be read a 503 page, a bad parameter a 400)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import queries
from .diagrams import run_diagram, saga_diagram
from .queries import cursor_text, detail_json, parse_filters, run_json

if TYPE_CHECKING:
    from .app import Inspector


def inspector_of(request: Request) -> Inspector:
    """The inspector the app serves (its store, templates and settings)."""
    inspector: Inspector = request.app.state.inspector
    return inspector


async def runs_page(request: Request) -> Response:
    """``/``: runs newest first, filtered, with counts by status and a next page link."""
    inspector = inspector_of(request)
    filters = parse_filters(request.query_params)
    page = await queries.runs_page(await inspector.store(), filters)
    return inspector.page(
        request, "runs.html", filters=filters, page=page, waits_text=queries.waits_text
    )


async def run_page(request: Request) -> Response:
    """``/runs/{id}``: one run, its path on its diagram; ``?fragment=1`` gives only the part
    that moves (status, diagram, steps, history), which the page fetches while it runs."""
    inspector = inspector_of(request)
    detail = await queries.run_detail(await inspector.store(), request.path_params["run_id"])
    diagram = await run_diagram(detail.snapshot)
    fragment = request.query_params.get("fragment") == "1"
    return inspector.page(
        request,
        "run_live.html" if fragment else "run.html",
        detail=detail,
        run=detail.run,
        diagram=diagram,
        waits_text=queries.waits_text(detail.run),
        pretty=queries.pretty,
    )


async def sagas_page(request: Request) -> Response:
    """``/sagas``: every saga the store has runs of, drawn, with its runs by status."""
    inspector = inspector_of(request)
    summaries = await queries.sagas(await inspector.store())
    diagrams = {s.saga: await saga_diagram(s.saga_path) for s in summaries}
    return inspector.page(request, "sagas.html", sagas=summaries, diagrams=diagrams)


async def outbox_page(request: Request) -> Response:
    """``/outbox``: pending and dead messages by topic and key."""
    inspector = inspector_of(request)
    groups, cut = await queries.outbox_groups(await inspector.store())
    return inspector.page(
        request, "outbox.html", groups=groups, cut=cut, limit=queries.OUTBOX_LIMIT
    )


async def api_runs(request: Request) -> Response:
    """``/api/runs``: a page of runs (the runs page's filters), its counts and next cursor."""
    inspector = inspector_of(request)
    page = await queries.runs_page(await inspector.store(), parse_filters(request.query_params))
    body: dict[str, Any] = {
        "runs": [run_json(r) for r in page.runs],
        "next": None if page.next is None else cursor_text(page.next),
        "counts": dict(page.counts),
    }
    return JSONResponse(body)


async def api_run(request: Request) -> Response:
    """``/api/runs/{id}``: one run with its steps, history, signals and messages."""
    inspector = inspector_of(request)
    detail = await queries.run_detail(await inspector.store(), request.path_params["run_id"])
    return JSONResponse(detail_json(detail))


async def api_sagas(request: Request) -> Response:
    """``/api/sagas``: every saga the store has runs of, with its runs by status."""
    inspector = inspector_of(request)
    summaries = await queries.sagas(await inspector.store())
    body = [{**attrs.asdict(s), "total": s.total} for s in summaries]
    return JSONResponse({"sagas": body})


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    """An error as a page, or as JSON under ``/api/``."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": title, "detail": message}, status_code=status)
    inspector = inspector_of(request)
    return inspector.page(request, "error.html", status=status, title=title, message=message)
