"""Typed outcomes: how each step execution ended."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._frozen import writable_twin

__all__ = ["TELEMETRY_VALUES", "CancelCause", "Outcome", "Status", "new_outcome"]


class Status(enum.StrEnum):
    """How a step ended (see ``docs/design.md``)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    FALLBACK = "fallback"

    @property
    def telemetry(self) -> str:
        """The value used in span attributes and metric labels.

        ``success``, ``failure``, ``timeout`` or ``cancellation``. A fallback is reported as
        ``timeout``: the step's deadline did expire, the fallback only hid it from the caller.
        (A fallback used because the step *failed*, ``fallback_on=("failure",)``, is a
        ``failure``: :attr:`StepEnded.result` tells them apart by the outcome's error.)
        """
        return TELEMETRY_VALUES[self]


TELEMETRY_VALUES: Final[Mapping[Status, str]] = {
    Status.SUCCEEDED: "success",
    Status.FAILED: "failure",
    Status.TIMED_OUT: "timeout",
    Status.CANCELLED: "cancellation",
    Status.FALLBACK: "timeout",
}


class CancelCause(enum.StrEnum):
    """Why a step was cancelled; one vocabulary for errors, spans and metric labels."""

    DEADLINE = "deadline"
    """The group's deadline or an enclosing one expired."""
    SIBLING_FAILURE = "sibling_failure"
    """A sibling failed and the parallel step is ``fail_fast``."""
    QUORUM_MET = "quorum_met"
    """The parallel step's ``min_successes`` was reached."""
    OUTSIDE = "outside"
    """The caller cancelled the run (its own cancel scope, service shutdown)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one step execution ended.

    Attributes:
        name: the step's name.
        step_type: the step's type (``"request"``, ``"parallel"``, ...).
        status: a :class:`Status`.
        value: the step's value (``succeeded``, ``fallback``; the partial results for a
            ``timed_out`` parallel step with ``on_timeout="partial"``), else ``None``.
        error: the exception for ``failed`` / ``timed_out`` outcomes; for a ``fallback``
            the error it replaced (the :class:`StepTimeoutError`, or for a failure a
            :class:`StepFailedError` whose ``__cause__`` is what the step raised); for a
            ``recovered`` parallel step whose children failed, a :class:`StepFailedError`
            naming them; else ``None``.
        elapsed: seconds from the step's start to its end.
        attempts: attempts made; ``0`` for a child that was never started.
        cause: for ``cancelled``: a :class:`CancelCause`; else ``None``.
        timeout: the step's resolved budget in seconds, or ``None`` if unbounded.
        recovered: the step timed out or failed but still returned a value
            (``fallback``, ``on_timeout="partial"``), or it is a parallel step that
            returned although some of its children failed or timed out
            (``on_failure="partial"``, or ``min_successes`` met): ``succeeded`` with
            ``recovered=True``. The flow went on.
        overrun: seconds the step ran past the deadline that governed it, when it ended
            by returning or raising after that deadline instead of being stopped by it:
            it held the event loop (blocking or CPU-bound code in an async handler) or
            ignored the cancellation. ``None`` for a step that ended in time or was
            stopped. Such a step is never ``succeeded``: it is ``timed_out`` if it owned
            the deadline, else ``cancelled`` (cause ``deadline`` or ``outside``); what it
            produced late is kept in ``value`` (or ``error``) but is never a result.
    """

    name: str
    step_type: str
    status: Status
    value: Any = None
    error: BaseException | None = None
    elapsed: float = 0.0
    attempts: int = 1
    cause: CancelCause | None = None
    timeout: float | None = None
    recovered: bool = False
    overrun: float | None = None

    # One Outcome is made for every step execution, so its construction is on the hot
    # path: the slots are set through their descriptors (what the generated __init__ of a
    # frozen dataclass does through object.__setattr__, at half the cost).
    def __init__(
        self,
        name: str,
        step_type: str,
        status: Status,
        value: Any = None,
        error: BaseException | None = None,
        elapsed: float = 0.0,
        attempts: int = 1,
        cause: CancelCause | None = None,
        timeout: float | None = None,
        recovered: bool = False,
        overrun: float | None = None,
    ) -> None:
        _set_name(self, name)
        _set_step_type(self, step_type)
        _set_status(self, status)
        _set_value(self, value)
        _set_error(self, error)
        _set_elapsed(self, elapsed)
        _set_attempts(self, attempts)
        _set_cause(self, cause)
        _set_timeout(self, timeout)
        _set_recovered(self, recovered)
        _set_overrun(self, overrun)

    @property
    def ok(self) -> bool:
        """True when the step produced a usable value.

        That is ``succeeded``, ``fallback``, or a ``timed_out`` parallel step with
        ``on_timeout="partial"`` (``recovered``), whose value is its partial results.
        """
        return self.status is Status.SUCCEEDED or self.recovered

    @property
    def started(self) -> bool:
        """False for a child that was queued and never started."""
        return self.attempts > 0


(
    _set_name,
    _set_step_type,
    _set_status,
    _set_value,
    _set_error,
    _set_elapsed,
    _set_attempts,
    _set_cause,
    _set_timeout,
    _set_recovered,
    _set_overrun,
) = (Outcome.__dict__[f.name].__set__ for f in dataclasses.fields(Outcome))


_OutcomeFields = writable_twin(Outcome)
_new = object.__new__


def new_outcome(
    name: str,
    step_type: str,
    status: Status,
    value: Any,
    error: BaseException | None,
    elapsed: float,
    attempts: int,
    cause: CancelCause | None,
    timeout: float | None,
    recovered: bool = False,
    overrun: float | None = None,
) -> Outcome:
    """``Outcome(...)`` for the core's hot path (see ``_frozen``): the same object, built
    at a third of the cost."""
    outcome = _new(_OutcomeFields)
    outcome.name = name
    outcome.step_type = step_type
    outcome.status = status
    outcome.value = value
    outcome.error = error
    outcome.elapsed = elapsed
    outcome.attempts = attempts
    outcome.cause = cause
    outcome.timeout = timeout
    outcome.recovered = recovered
    outcome.overrun = overrun
    outcome.__class__ = Outcome
    return outcome  # type: ignore[no-any-return]
