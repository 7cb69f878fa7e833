"""The one record of a step that ended, built once by the core for every observer.

Tracing, metrics, logs and user hooks all read the same :class:`StepEnded`: outcome,
cancel cause, elapsed time, budget use, attempts, error type, pending children and
overrun are each computed once, from one clock reading, in one place (the model is
stamina's ``RetryDetails``, built once before every hook runs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._errors import StepFailedError, StepwatchError, ValidationError, left_a_run
from ._frozen import writable_twin
from ._outcome import TELEMETRY_VALUES, CancelCause, Outcome, Status

if TYPE_CHECKING:
    from ._context import StepContext
    from ._steps import Step

__all__ = [
    "DEFAULT_NEAR_TIMEOUT",
    "StepEnded",
    "checked_near_timeout",
    "error_type",
    "new_record",
    "type_name",
]

DEFAULT_NEAR_TIMEOUT: Final = 0.8
"""Share of its budget above which a step that ended is ``near_timeout``."""


def checked_near_timeout(value: object, field: str) -> float | None:
    """``value`` as a near-timeout share of the budget (a number in (0, 1], or None).

    Raises:
        ValidationError: anything else, naming ``field``.
    """
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or not 0 < value <= 1
    ):
        raise ValidationError(
            f"{field} must be a number in (0, 1] or None; got {value!r}",
            field=field,
            value=value,
        )
    return float(value)


@dataclass(frozen=True, slots=True, eq=False)
class StepEnded:
    """How one step execution ended: what every hook and telemetry integration receives.

    Built once per step end by the executor. A child that never started gets one too
    (``outcome.attempts == 0``); its ``context`` is then its parent's.

    Attributes:
        step: the step definition.
        context: the step's :class:`StepContext` (its parent's for a step that never
            started).
        outcome: the step's :class:`Outcome` (status, value, error, elapsed, attempts,
            cause, timeout, overrun).
        ended: when it ended, on anyio's clock.
        exception: the exception as the step raised it (``outcome.error`` wraps one that is
            not a stepwatch error in a :class:`StepFailedError`); for a step that timed
            out, the deadline error; for a fallback used because the step failed, the
            :class:`StepFailedError` whose ``__cause__`` is what it raised; else ``None``.
        error_type: the ``error.type`` of the step's span: ``"timeout"`` when it owned an
            expired deadline, ``"overrun"`` when it was cut off after running past the
            deadline governing it, the qualified class of its exception when it failed
            (``ValueError``, ``stepwatch.StepTimeoutError``, ``mylib.BackendError``), also
            when it then used its fallback (``fallback_on`` with ``"failure"``), else
            ``None``.
        arose_here: its error arose in this step (not a child's error passing through, nor
            a summary of its children's errors): record or log it here, once.
        budget_ratio: elapsed / timeout of its last attempt, for a step with a finite
            budget that was not cancelled; at most 1.0 for a step that owned an expired
            deadline (the time it ran past the deadline is ``outcome.overrun``).
        near_timeout: it succeeded or failed after using more than the executor's
            ``near_timeout`` share of its budget.
        pending: for a timed-out composite step, the children that had not finished.
        children: for a step that runs children concurrently (parallel), how many ended
            in each :class:`Status` (never started counts as ``cancelled``).
        cancelled: for such a step, how many children were cancelled or never started,
            by cause.
    """

    step: Step
    context: StepContext
    outcome: Outcome
    ended: float
    exception: BaseException | None = None
    error_type: str | None = None
    arose_here: bool = False
    budget_ratio: float | None = None
    near_timeout: bool = False
    pending: tuple[str, ...] = ()
    children: Mapping[str, int] | None = None
    cancelled: Mapping[str, int] | None = None

    def __init__(
        self,
        step: Step,
        context: StepContext,
        outcome: Outcome,
        ended: float,
        exception: BaseException | None = None,
        error_type: str | None = None,
        arose_here: bool = False,
        budget_ratio: float | None = None,
        near_timeout: bool = False,
        pending: tuple[str, ...] = (),
        children: Mapping[str, int] | None = None,
        cancelled: Mapping[str, int] | None = None,
    ) -> None:  # see Outcome.__init__: built for every step, so set through descriptors
        _set_step(self, step)
        _set_context(self, context)
        _set_outcome(self, outcome)
        _set_ended(self, ended)
        _set_exception(self, exception)
        _set_error_type(self, error_type)
        _set_arose_here(self, arose_here)
        _set_budget_ratio(self, budget_ratio)
        _set_near_timeout(self, near_timeout)
        _set_pending(self, pending)
        _set_children(self, children)
        _set_cancelled(self, cancelled)

    @property
    def flow(self) -> str:
        """The flow's name."""
        return self.context.flow_name

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.context.run_id

    @property
    def result(self) -> str:
        """``success``, ``failure``, ``timeout`` or ``cancellation``: the ``outcome`` of
        span attributes, metric labels and log events (see :attr:`Status.telemetry`; a
        ``fallback`` used because the step failed is a ``failure``)."""
        outcome = self.outcome
        status = outcome.status
        if status is Status.FALLBACK and isinstance(outcome.error, StepFailedError):
            return "failure"
        return TELEMETRY_VALUES[status]  # status.telemetry, without the property call

    @property
    def cause(self) -> CancelCause | None:
        """Why it was cancelled (``None`` unless cancelled)."""
        return self.outcome.cause


(
    _set_step,
    _set_context,
    _set_outcome,
    _set_ended,
    _set_exception,
    _set_error_type,
    _set_arose_here,
    _set_budget_ratio,
    _set_near_timeout,
    _set_pending,
    _set_children,
    _set_cancelled,
) = (StepEnded.__dict__[f.name].__set__ for f in dataclasses.fields(StepEnded))


_StepEndedFields = writable_twin(StepEnded)
_new = object.__new__


def new_record(
    step: Step,
    context: StepContext,
    outcome: Outcome,
    ended: float,
    exception: BaseException | None,
    error_type: str | None,
    arose_here: bool,
    budget_ratio: float | None,
    near_timeout: bool,
    pending: tuple[str, ...],
    children: Mapping[str, int] | None,
    cancelled: Mapping[str, int] | None,
) -> StepEnded:
    """``StepEnded(...)`` for the core's hot path (see ``_frozen``)."""
    record = _new(_StepEndedFields)
    record.step = step
    record.context = context
    record.outcome = outcome
    record.ended = ended
    record.exception = exception
    record.error_type = error_type
    record.arose_here = arose_here
    record.budget_ratio = budget_ratio
    record.near_timeout = near_timeout
    record.pending = pending
    record.children = children
    record.cancelled = cancelled
    record.__class__ = StepEnded
    return record  # type: ignore[no-any-return]


def error_type(status: Status, error: BaseException | None, overrun: float | None) -> str | None:
    """The ``error.type`` value for a step that ended with ``status`` (see StepEnded)."""
    if status is Status.FALLBACK and isinstance(error, StepFailedError):
        # a fallback used because the step failed: the class of what the step raised
        cause = error.__cause__
        error = cause if cause is not None and len(error.errors) == 1 else error
    elif status is Status.TIMED_OUT or status is Status.FALLBACK:
        return "timeout"
    elif status is Status.CANCELLED:
        return "overrun" if overrun is not None else None
    elif status is not Status.FAILED or error is None:
        return None
    return type_name(type(error))


def type_name(cls: type) -> str:
    """An exception class's name as telemetry shows it (``error.type``, ``exception.type``):
    the bare name of a builtin, else the module path, a stepwatch class by its public path
    (``stepwatch._errors.StepTimeoutError`` -> ``stepwatch.StepTimeoutError``)."""
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    if module.startswith("stepwatch"):
        module = ".".join(part for part in module.split(".") if not part.startswith("_"))
    return f"{module}.{cls.__qualname__}"


def arose_here(step: Step, error: BaseException | None) -> bool:
    """Whether ``error`` arose in ``step`` (see StepEnded.arose_here)."""
    if error is None:
        return False
    if _passing_through(step, error):
        return False  # a child's error
    if isinstance(error, StepFailedError) and error.errors:
        return not all(_passing_through(step, e) for e in error.errors)
    return True


def _passing_through(step: Step, error: BaseException) -> bool:
    """Whether ``error`` is the error of a step of this run below ``step`` (one that came
    out of another run, a sub-flow's, arose in the handler that raised it)."""
    return (
        isinstance(error, StepwatchError)
        and error.step_name is not None
        and error.step_name != step.name
        and not left_a_run(error)
    )


def budget_ratio(status: Status, timeout: float | None, attempt_elapsed: float) -> float | None:
    """elapsed / timeout of the last attempt (exactly 1.0 for an expired own deadline)."""
    if timeout is None or timeout <= 0 or math.isinf(timeout) or status is Status.CANCELLED:
        return None
    ratio = attempt_elapsed / timeout
    if status is Status.TIMED_OUT or status is Status.FALLBACK:
        # an expired own deadline used the whole budget: (start + timeout) - start may come
        # out a rounding error below it; a fallback after a failure keeps its real ratio
        return 1.0 if ratio > _WHOLE_BUDGET else ratio
    return ratio


_WHOLE_BUDGET: Final = 1.0 - 1e-9


def child_counts(
    outcomes: list[Outcome | None],
) -> tuple[dict[str, int], dict[str, int]]:
    """Per status and, for the cancelled, per cause (``None`` = never started)."""
    by_status = {s.value: 0 for s in Status}
    by_cause: dict[str, int] = {}
    for outcome in outcomes:
        if outcome is None:
            by_status["cancelled"] += 1
            continue
        by_status[outcome.status] += 1  # a StrEnum: finds the key of its value, no .value
        cause = outcome.cause
        if cause is not None:
            by_cause[cause.value] = by_cause.get(cause.value, 0) + 1
    return by_status, by_cause
