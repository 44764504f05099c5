"""The inspector as a Starlette app: its routes, the store it reads (opened on first use,
never created), its templates, and what a request that fails is answered with."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..durable.resources import shutdown
from ..errors import RunNotFound, StoreError
from ..store import SagaStore, hide_password, store_from_url
from . import actions, views
from .queries import _InvalidParameter, cursor_text, time_text

logger = logging.getLogger("statesaga.ui")

HERE = Path(__file__).parent

#: What a page may load: its own scripts and styles, nothing inline but styles (Graphviz's
#: SVG carries style attributes), nothing from elsewhere, and it is framed by no one.
CONTENT_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
)


class Inspector:
    """What every request of one app shares: the store, the settings, the templates.

    Args:
        url: The store's URL.
        allow_actions: Whether the POST actions may change runs and messages.
    """

    def __init__(self, url: str, *, allow_actions: bool = False) -> None:
        from ..cli._common import shown, when  # shown as the commands show them

        self.url = url
        self.shown_url = shown(url)
        self.allow_actions = allow_actions
        #: This process's CSRF token: every action form carries it, every POST must.
        self.csrf = secrets.token_urlsafe(32)
        #: The resumes going on in this process, by run id.
        self.driving: dict[str, asyncio.Task[Any]] = {}
        self._store: SagaStore | None = None
        self._file: tuple[int, int] | None = None  # the SQLite file opened: device, inode
        self._lock = asyncio.Lock()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(when=when, time_text=time_text, cursor=cursor_text)

    async def store(self) -> SagaStore:
        """The store, opened on first use without creating it (``StoreNotFound``).

        A SQLite file deleted or replaced since it was opened is noticed here, on every
        request: the store is opened again from the path (``StoreNotFound`` if nothing is
        there), rather than reads going on in a file no one else sees any more.
        """
        async with self._lock:
            if self._store is not None and _file_of(self._store) != self._file:
                store, self._store = self._store, None
                logger.warning(
                    "statesaga ui: the file of %s was deleted or replaced: opening it again",
                    self.shown_url,
                )
                with contextlib.suppress(Exception):
                    await store.close()
            if self._store is None:
                store = store_from_url(self.url)
                try:
                    await store.open(create=False)
                except BaseException:
                    await store.close()
                    raise
                self._store, self._file = store, _file_of(store)
            return self._store

    async def forget_store(self) -> None:
        """Close the store after it failed: the next request opens it again."""
        async with self._lock:
            store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()

    async def close(self) -> None:
        """Stop the resumes still going on, close what they opened and the store."""
        tasks = list(self.driving.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await shutdown()
        await self.forget_store()

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        """Template ``name`` rendered with ``context`` (and what every page shows)."""
        text = self.templates.get_template(name).render(
            request=request,
            store_url=self.shown_url,
            allow_actions=self.allow_actions,
            csrf=self.csrf,
            status=status,
            **context,
        )
        return HTMLResponse(text, status_code=status)


def _file_of(store: SagaStore) -> tuple[int, int] | None:
    """The device and inode of a SQLite store's file (``None``: no file there, or a store that
    is no file)."""
    path = getattr(store, "path", None)
    if path is None:
        return None
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


class SecurityHeaders(BaseHTTPMiddleware):
    """Adds ``CONTENT_POLICY`` and its siblings to every answer."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response


async def _not_found(request: Request, error: Exception) -> Response:
    return views.error_page(request, 404, "no such run", str(error))


async def _store_failed(request: Request, error: Exception) -> Response:
    inspector = views.inspector_of(request)
    await inspector.forget_store()
    message = str(error).replace(inspector.url, hide_password(inspector.url))
    logger.warning("statesaga ui: store %s failed: %s", inspector.shown_url, message)
    return views.error_page(request, 503, "the store cannot be read", message)


async def _bad_parameter(request: Request, error: Exception) -> Response:
    return views.error_page(request, 400, "bad request", str(error))


async def _missing(request: Request, error: Exception) -> Response:
    return views.error_page(request, 404, "not found", f"nothing at {request.url.path}")


async def _read_only(request: Request, error: Exception) -> Response:
    what = "the pages and the API answer GET only; actions are POSTs to /actions/..."
    return views.error_page(request, 405, "method not allowed", what)


def create_app(url: str, *, allow_actions: bool = False) -> Starlette:
    """The inspector of the store at ``url``; with ``allow_actions``, its action forms work.

    The store is opened on the first request (never created: a URL that names no store is
    an error page) and closed when the app stops.
    """
    inspector = Inspector(url, allow_actions=allow_actions)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await inspector.close()

    routes = [
        Route("/", views.runs_page),
        Route("/runs/{run_id:path}", views.run_page),
        Route("/sagas", views.sagas_page),
        Route("/outbox", views.outbox_page),
        Route("/api/runs", views.api_runs),
        Route("/api/runs/{run_id:path}", views.api_run),
        Route("/api/sagas", views.api_sagas),
        Route("/actions/{name}", actions.act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        lifespan=lifespan,
        exception_handlers={
            RunNotFound: _not_found,
            StoreError: _store_failed,
            _InvalidParameter: _bad_parameter,
            404: _missing,
            405: _read_only,
        },
    )
    app.state.inspector = inspector

    return app
