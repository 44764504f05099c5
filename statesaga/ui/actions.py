"""The inspector's actions: resume (or push forward) a run, signal or cancel a waiting run,
requeue a dead message, purge dead messages (by age, or one by its id). Each does what the
command of the same name does (``statesaga runs resume|signal|cancel``,
``statesaga outbox retry|purge``), and each is:

- off unless the app was made with ``allow_actions`` (a POST is then answered 403);
- a POST carrying this process's CSRF token in its form (``csrf``), or it is refused (403);
- logged (logger ``statesaga.ui``) with what was asked and what came of it.

A resume drives the run in this server's process, as ``statesaga runs resume`` does in its
own; one that is not over within ``RESUME_WAIT`` seconds goes on in the background, and the
run page shows it move.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from ..durable.waiting import request_cancel, signal
from ..errors import RunWaiting, StatesagaError
from ..json_data import json_object
from ..store import SagaStore
from .queries import _InvalidParameter
from .views import inspector_of

if TYPE_CHECKING:
    from .app import Inspector

logger = logging.getLogger("statesaga.ui")

#: Seconds a resume is waited for before the answer says it goes on in the background.
RESUME_WAIT = 2.0

Form = dict[str, str]


def _field(form: Form, name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise _InvalidParameter(f"the form has no {name}: fill it in and send it again")
    return value


async def _resume(inspector: Inspector, store: SagaStore, form: Form) -> str:
    from ..cli.runs import _resume_one  # what `statesaga runs resume RUN` does

    run_id = _field(form, "run_id")
    task = asyncio.create_task(_resume_one(store, run_id, False, None, False))
    inspector.tasks.add(task)
    task.add_done_callback(lambda done: _resumed(inspector, run_id, done))
    await asyncio.wait({task}, timeout=RESUME_WAIT)
    if not task.done():
        return f"{run_id}: resuming; it goes on in this server and its page shows it move"
    try:
        return f"{run_id}: {task.result().status.value}"
    except RunWaiting as waits:
        return f"{run_id}: waiting for {', '.join(waits.events)}"


def _resumed(inspector: Inspector, run_id: str, task: asyncio.Task[Any]) -> None:
    inspector.tasks.discard(task)
    if task.cancelled():
        logger.info("statesaga ui: resume of %s stopped with the server", run_id)
    elif isinstance(task.exception(), RunWaiting | None):
        logger.info("statesaga ui: resume of %s ended", run_id)
    else:
        logger.warning("statesaga ui: resume of %s failed: %s", run_id, task.exception())


async def _signal(inspector: Inspector, store: SagaStore, form: Form) -> str:
    run_id, event = _field(form, "run_id"), _field(form, "event")
    text = form.get("payload", "").strip()
    try:  # read as `statesaga runs signal --data` reads it
        payload = json_object(text) if text else None
    except ValueError as error:
        raise _InvalidParameter(f"payload: {error}") from None
    accepted = await signal(store, run_id, event, payload)
    return f"{run_id}: signal {event!r} " + ("accepted" if accepted else "was a duplicate")


async def _cancel(inspector: Inspector, store: SagaStore, form: Form) -> str:
    run_id = _field(form, "run_id")
    asked = await request_cancel(store, run_id)
    return f"{run_id}: " + ("cancellation requested" if asked else "already requested")


async def _retry(inspector: Inspector, store: SagaStore, form: Form) -> str:
    message_id = _field(form, "message_id")
    if not await store.outbox_retry([message_id], time.time()):
        raise _InvalidParameter(f"{message_id}: not requeued (no such message, or already sent)")
    return f"{message_id}: requeued, due now"


async def _purge(inspector: Inspector, store: SagaStore, form: Form) -> str:
    message_id = form.get("message_id", "").strip()
    if message_id:  # that one dead message, whatever its age
        if form.get("days", "").strip():
            raise _InvalidParameter("give days or message_id, not both")
        if not await store.outbox_purge("dead", math.inf, [message_id]):
            raise _InvalidParameter(f"{message_id}: not deleted (no such dead message)")
        return f"{message_id}: deleted"
    try:
        days = float(_field(form, "days"))
    except ValueError:
        days = -1.0
    if not days >= 0:
        raise _InvalidParameter("days must be a number of days, 0 or more")
    count = await store.outbox_purge("dead", time.time() - days * 86_400)
    return f"deleted {count} dead message{'' if count == 1 else 's'} older than {days:g} days"


#: The actions by name (``POST /actions/<name>``): each function's name without its ``_``.
ACTIONS: dict[str, Callable[[Inspector, SagaStore, Form], Awaitable[str]]] = {
    action.__name__.lstrip("_"): action for action in (_resume, _signal, _cancel, _retry, _purge)
}


async def act(request: Request) -> Response:
    """``POST /actions/{name}``: check that actions are on and the token, then act."""
    inspector = inspector_of(request)
    name = request.path_params["name"]
    if not inspector.allow_actions:
        return _answer(request, 403, "actions are off", "start the inspector with --allow-actions")
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if not hmac.compare_digest(form.get("csrf", "").encode(), inspector.csrf.encode()):
        logger.warning("statesaga ui: refused %s without a valid form token", name)
        return _answer(
            request, 403, "refused", "the form's token is missing or stale: reload the page"
        )
    action = ACTIONS.get(name)
    if action is None:
        return _answer(request, 404, "no such action", f"{name!r} is none of {', '.join(ACTIONS)}")
    asked = {k: v for k, v in form.items() if k != "csrf"}
    store = await inspector.store()
    try:
        message = await action(inspector, store, form)
    except (_InvalidParameter, StatesagaError) as error:
        logger.warning("statesaga ui: %s %s refused: %s", name, asked, error)
        return _answer(request, 409, f"{name} refused", str(error), form)
    logger.info("statesaga ui: %s %s: %s", name, asked, message)
    return _answer(request, 200, f"{name} done", message, form)


def _answer(
    request: Request, status: int, title: str, message: str, form: Form | None = None
) -> Response:
    form = form or {}
    back = "/outbox" if "message_id" in form or "days" in form else "/"
    if form.get("run_id"):
        back = "/runs/" + quote(form["run_id"], safe="")
    return inspector_of(request).page(
        request, "action.html", status=status, title=title, message=message, back=back
    )
