"""``Wait``: a step that waits for a signal from the outside world, or for its timeout."""

from __future__ import annotations

from typing import Final, Literal

import attrs

from .step import Action, Step, is_number, to_seconds

OnTimeout = Literal["fail", "continue"]
#: What a wait may do when its timeout passes.
ON_TIMEOUT: Final[tuple[str, ...]] = ("fail", "continue")


@attrs.frozen
class Wait(Step):
    """A step that waits for the signal named like it (its event), sent to the run from
    anywhere: ``await run.signal(name, payload)`` or ``statesaga.signal(store, run_id, name)``.

    Its result is the signal's payload (``{}`` for none), which later steps read from
    ``ctx.results[name]``. It has no action and no compensation. A durable run that waits
    holds no task and no lease: it is rows until its signal or its timeout comes.

    Attributes:
        name: The wait's name, which is also the event it waits for.
        timeout: Seconds (or a ``timedelta``) to wait, counted from when the run reaches the
            wait; ``None`` waits for ever (the saga's deadline still applies before a pivot).
        depends_on: Steps that must succeed before the wait begins.
        on_timeout: ``"fail"``: the wait fails with ``WaitTimeoutError`` (the run is
            compensated before its pivot, halts after it). ``"continue"``: the wait succeeds
            with ``{}``, which makes a durable sleep.
    """

    # Present so that a Wait given one is refused with a clear message, not a TypeError.
    action: Action | None = attrs.field(default=None, kw_only=True)  # type: ignore[assignment]
    on_timeout: OnTimeout = attrs.field(default="fail", kw_only=True)

    def problems(self) -> list[str]:
        """What is wrong with this wait taken alone (empty when it is usable)."""
        found = self._name_problems()
        if self.action is not None:
            found.append(
                "a Wait has no action: its result is the signal's payload; use a Step after "
                "it to act on the payload"
            )
        if self.compensate is not None:
            found.append(
                "a Wait has no compensation: there is nothing to undo; compensate the step "
                "the signal leads to instead"
            )
        if self.pivot is not False:
            found.append("a Wait cannot be the pivot: make the step after it the pivot")
        if self.retry is not None or self.compensate_retry is not None:
            found.append("a Wait is not retried: remove retry= and compensate_retry=")
        seconds = to_seconds(self.timeout)
        if seconds is not None and (not is_number(seconds) or not seconds > 0):
            found.append(
                f"timeout={self.timeout!r}: a wait's timeout must be a positive number of "
                "seconds, a timedelta, or None to wait for ever"
            )
        if self.on_timeout not in ON_TIMEOUT:
            found.append(
                f"on_timeout={self.on_timeout!r}: use 'fail' (the wait fails when its "
                "timeout passes) or 'continue' (it succeeds with {})"
            )
        elif self.on_timeout == "continue" and self.timeout is None:
            found.append(
                "on_timeout='continue' needs a timeout: without one the wait never times out"
            )
        return [*found, *self._when_problems(), *self._depends_on_problems()]
