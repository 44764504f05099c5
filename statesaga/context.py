"""What an action or compensation receives."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import StoreError
from .vocabulary import idempotency_key

if TYPE_CHECKING:
    from .messaging.message import Message


@functools.cache
def _emitting() -> tuple[type[Message], Callable[..., str]]:
    """``Message`` and the stores' JSON encoder, imported by the first ``emit``.

    Most sagas emit nothing, and these modules bring in messaging and the stores. Cached
    rather than imported in ``emit``: an import statement costs about 1 µs on every call.
    """
    from .messaging.message import Message
    from .store._codec import dumps

    return Message, dumps


class Context:
    """The view one action or compensation call has of its run.

    Attributes:
        data: The saga's input.
        results: What earlier steps returned, by step name (a step that returned ``None``
            appears as an empty mapping). In a DAG only a step's dependencies are certain to
            be there.
        saga_id: The run's id.
        step: The step being run.
        attempt: 1 for the first call, 2 for the first retry, and so on.
        idempotency_key: Stable for this step (and, separately, for its compensation) across
            attempts and resumes: pass it to the services you call so a retry never acts twice.
        compensating: Whether this call is the step's compensation.
        emitted: The messages this call emitted so far, in order.
    """

    __slots__ = (
        "attempt",
        "compensating",
        "data",
        "emitted",
        "results",
        "saga_id",
        "step",
    )

    def __init__(
        self,
        data: Mapping[str, Any],
        results: Mapping[str, Mapping[str, Any]],
        saga_id: str,
        step: str,
        attempt: int,
        compensating: bool = False,
    ) -> None:
        self.data = data
        self.results = results
        self.saga_id = saga_id
        self.step = step
        self.attempt = attempt
        self.compensating = compensating
        self.emitted: Sequence[Message] = ()  # a list from the first emit: most calls emit none

    def emit(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Send a message if, and only if, this call succeeds.

        The message is committed with the step's success (or the compensation's end) and
        published after that commit; a call that fails emits nothing. Its id,
        ``<idempotency_key>:<n>`` for the n-th message of the call, is the same on every
        attempt and after a resume, so consumers can recognise a redelivery.

        Args:
            topic: Where it goes (a routing key, subject or stream name).
            payload: The body: JSON data.
            key: Messages with the same key are delivered in the order they were committed.
            headers: Extra text headers.

        Raises:
            TypeError: ``topic`` is not a non-empty string, ``key`` not a string or None, a
                header not text, or ``payload`` not JSON data that can be sent.
        """
        Message, dumps = _emitting()
        where = f"ctx.emit({topic!r}) in step {self.step!r} of run {self.saga_id}"
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"ctx.emit in step {self.step!r}: topic must be a non-empty string")
        if key is not None and not isinstance(key, str):
            raise TypeError(f"{where}: key must be a string or None, not {type(key).__name__}")
        if headers is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise TypeError(f"{where}: header names and values must be strings")
        # Checked now, while the step can still fail: a message that cannot be stored or sent
        # would otherwise stop the run at its commit, or hold its key in the outbox.
        try:
            text = dumps(payload)
        except StoreError as error:
            raise TypeError(
                f"{where}: the payload is not JSON data ({error.__cause__ or error}); emit "
                "dicts, lists, strings, numbers, booleans or None"
            ) from None
        strings = [topic, key or "", *(headers or {}).keys(), *(headers or {}).values()]
        if "\\ud" in text:  # escaped surrogates: a pair is fine, a lone one cannot be sent
            strings.append(json.dumps(payload, ensure_ascii=False))
        try:
            for string in strings:
                string.encode()
        except UnicodeEncodeError:
            raise TypeError(
                f"{where}: it holds text that is not valid Unicode (a lone surrogate); no broker "
                "can send it"
            ) from None
        emitted = self.emitted
        if not isinstance(emitted, list):
            emitted = self.emitted = []
        message = Message(
            id=f"{self.idempotency_key}:{len(emitted) + 1}",
            topic=topic,
            payload=payload,
            key=key,
            headers=dict(headers or {}),
            saga_id=self.saga_id,
            step=self.step,
            created_at=time.time(),
        )
        emitted.append(message)
        return message

    @property
    def idempotency_key(self) -> str:
        """Stable for this step (and, separately, for its compensation) across attempts and
        resumes: pass it to the services you call so a retry never acts twice."""
        # Built when asked for: most calls never read it, and every call makes a Context.
        return idempotency_key(self.saga_id, self.step, compensating=self.compensating)

    @property
    def action_key(self) -> str:
        """The idempotency key of this step's action, the same from its compensation.

        A compensation passes it to the service to find what the action did: its own
        ``idempotency_key`` is different (``...:compensate``), so repeating the undo is safe.
        """
        return idempotency_key(self.saga_id, self.step)

    def __repr__(self) -> str:
        kind = "compensation" if self.compensating else "action"
        return f"<Context {kind} of {self.step!r} attempt {self.attempt} in {self.saga_id}>"
