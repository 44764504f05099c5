"""The inspector's actions: resume (or push forward) a run, signal or cancel a waiting run,
requeue a dead message, purge dead messages (by age, or one by its id). Each does what the
command of the same name does (``statesaga runs resume|signal|cancel``,
``statesaga outbox retry|purge``), and each is:

- off unless the app was made with ``allow_actions`` (a POST is then answered 403);
- a POST carrying this process's CSRF token in its form (``csrf``), or it is refused (403);
- answered 400 for a parameter that cannot be used, 404 for a run or message the store does
  not have, and 409 when the run's or message's state refuses it;
- logged (logger ``statesaga.ui``) with what was asked and what came of it.

A resume drives the run in this server's process, as ``statesaga runs resume`` does in its
own; one that is not over within ``RESUME_WAIT`` seconds goes on in the background, and the
run page shows it move. A run is driven by one resume of this process at a time.
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
from ..errors import (
    LeaseHeld,
    RecordedError,
    RunNotFound,
    RunWaiting,
    SagaNotImportable,
    StatesagaError,
)
from ..json_data import json_object
from ..loader import unimportable
from ..result import SagaResult, SagaStatus, describe
from ..store import OutboxRecord, SagaStore
from .queries import _InvalidParameter
from .views import inspector_of

if TYPE_CHECKING:
    from .app import Inspector

logger = logging.getLogger("statesaga.ui")

#: Seconds a resume is waited for before the answer says it goes on in the background.
RESUME_WAIT = 2.0

Form = dict[str, str]

#: What drives a stored run on once it is due, as the answers say it.
DRIVERS = (
    "a `statesaga worker` on this store, the process that started it and follows it, or the "
    "resume button on its page"
)


class _Refused(Exception):
    """An action refused with ``status`` (404: no such message; 409: its state refuses it)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def _field(form: Form, name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise _InvalidParameter(f"the form has no {name}: fill it in and send it again")
    return value


async def _resume(inspector: Inspector, store: SagaStore, form: Form) -> str:
    from ..cli.runs import _resume_one  # what `statesaga runs resume RUN` does

    run_id = _field(form, "run_id")
    if run_id in inspector.driving:
        raise _Refused(
            409,
            f"{run_id}: this inspector is already driving it (an earlier resume goes on in the "
            "background): reload its page to see it move",
        )
    task = asyncio.create_task(_resume_one(store, run_id, False, None, False))
    inspector.driving[run_id] = task
    task.add_done_callback(lambda done: _resumed(inspector, run_id, done))
    await asyncio.wait({task}, timeout=RESUME_WAIT)
    if not task.done():
        return f"{run_id}: resuming; it goes on in this server and its page shows it move"
    try:
        return f"{run_id}: {_outcome(task.result())}"
    except RunWaiting as waits:
        return f"{run_id}: waiting for {', '.join(waits.events)}"
    except LeaseHeld as held:
        raise _Refused(
            409,
            f"{run_id}: another process is driving it (its lease, held by {held.owner}, runs "
            f"until {_when(held.expires)} UTC): its page shows it move; if that process "
            "stopped, resume it here once the lease has run out",
        ) from None


def _outcome(result: SagaResult) -> str:
    """How a resumed run ended, with the failure that stopped it."""
    text = result.status.value
    if result.status is SagaStatus.COMPLETED or result.failed_step is None:
        return text
    failures = [f"{result.failed_step} failed: {_error_text(result.error)}"]
    failures += [
        f"compensating {step} failed: {_error_text(error)}"
        for step, error in result.compensation_errors.items()
    ]
    return f"{text} ({'; '.join(failures)})"


def _error_text(error: BaseException | None) -> str:
    return str(error) if isinstance(error, RecordedError) else describe(error) or "no error kept"


def _when(epoch: float) -> str:
    from ..cli._common import when

    return when(epoch)


def _resumed(inspector: Inspector, run_id: str, task: asyncio.Task[Any]) -> None:
    if inspector.driving.get(run_id) is task:
        del inspector.driving[run_id]
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
    if not accepted:
        return f"{run_id}: signal {event!r} was a duplicate"
    return (
        f"{run_id}: signal {event!r} accepted. The run is due now and goes on when it is next "
        f"driven: by {DRIVERS}"
    )


async def _cancel(inspector: Inspector, store: SagaStore, form: Form) -> str:
    run_id = _field(form, "run_id")
    asked = await request_cancel(store, run_id)
    return (
        f"{run_id}: cancellation {'requested' if asked else 'already requested'}. The run is "
        f"compensated when it is next driven: by {DRIVERS}"
    )


async def _retry(inspector: Inspector, store: SagaStore, form: Form) -> str:
    message_id = _field(form, "message_id")
    if not await store.outbox_retry([message_id], time.time()):
        from ..cli.outbox import NO_SUCH_MESSAGE, not_requeued

        why = not_requeued(await _message(store, message_id, form))
        raise _Refused(404 if why == NO_SUCH_MESSAGE else 409, f"{message_id}: not requeued: {why}")
    return f"{message_id}: requeued, due now"


async def _message(store: SagaStore, message_id: str, form: Form) -> OutboxRecord | None:
    """The message ``message_id`` as found in the store (``None``: none), looked for first
    among the messages of the run the form names (``of_run``, else ``run_id``)."""
    from ..cli.outbox import find_message

    run_id = form.get("of_run", "").strip() or form.get("run_id", "").strip() or None
    return await find_message(store, message_id, run_id)


async def _purge(inspector: Inspector, store: SagaStore, form: Form) -> str:
    message_id = form.get("message_id", "").strip()
    if message_id:  # that one dead message, whatever its age
        if form.get("days", "").strip():
            raise _InvalidParameter("give days or message_id, not both")
        if not await store.outbox_purge("dead", math.inf, [message_id]):
            from ..cli.outbox import DEAD, NO_SUCH_MESSAGE, not_purged

            why = not_purged(await _message(store, message_id, form), DEAD)
            status = 404 if why == NO_SUCH_MESSAGE else 409
            raise _Refused(status, f"{message_id}: not deleted: {why}")
        return f"{message_id}: deleted"
    try:
        days = float(_field(form, "days"))
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and days >= 0):
        raise _InvalidParameter(
            f"days {form.get('days', '').strip()!r} is not a number of days: give one, 0 or more"
        )
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
    except (_InvalidParameter, _Refused, StatesagaError) as error:
        logger.warning("statesaga ui: %s %s refused: %s", name, asked, error)
        status, text = _refusal(error)
        return _answer(request, status, f"{name} refused", text, form)
    logger.info("statesaga ui: %s %s: %s", name, asked, message)
    return _answer(request, 200, f"{name} done", message, form)


def _refusal(error: Exception) -> tuple[int, str]:
    """The status code and text of an action refused with ``error``."""
    if isinstance(error, _InvalidParameter):
        return 400, str(error)
    if isinstance(error, _Refused):
        return error.status, str(error)
    if isinstance(error, RunNotFound):
        return 404, str(error)
    if isinstance(error, SagaNotImportable):
        why = unimportable(error.reference) or "its import failed"
        return 409, (
            f"run {error.run_id}: its saga {error.reference} cannot be imported by this "
            f"inspector ({why}): start `statesaga ui` from the folder where that module can "
            "be imported, or with PYTHONPATH naming that folder"
        )
    return 409, str(error)


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
