"""Small helpers shared by the composite executors (public StepContext API only)."""

from __future__ import annotations

from typing import NoReturn

from .._context import ChildProgress, StepContext
from .._errors import StepFailedError
from .._outcome import CancelCause, Outcome
from .._steps import Step
from .._text import listing


def raise_error(outcome: Outcome) -> NoReturn:
    """Re-raise the error of a child outcome that did not produce a value."""
    assert outcome.error is not None, outcome
    raise outcome.error


def children_failed(
    step: Step,
    ctx: StepContext,
    progress: ChildProgress,
    failures: list[Outcome],
    *,
    need: int | None = None,
) -> StepFailedError:
    """One StepFailedError for several failed children (ExceptionGroup as __cause__)."""
    errors: list[Exception] = []
    for outcome in failures:
        assert isinstance(outcome.error, Exception)
        errors.append(outcome.error)
    partial = progress.partial()
    outcomes = progress.by_name()
    failed = listing([f"{o.name} ({o.status.value})" for o in failures])
    cancelled = [o.name for o in outcomes.values() if o.cause is CancelCause.SIBLING_FAILURE]
    message = (
        f"{step.type} step {step.name!r}: {len(failures)} of {len(progress.steps)} "
        f"children failed: {failed}"
    )
    if need is not None:
        message += f"; min_successes={need} can no longer be reached"
    if partial:
        message += f"; finished: {listing(list(partial))}"
    if cancelled:
        message += f"; cancelled: {listing(cancelled)}"
    error = StepFailedError(
        message,
        step_name=step.name,
        step_type=step.type,
        errors=errors,
        partial=partial,
        outcomes=outcomes,
        attempts=ctx.attempt,
        elapsed=ctx.elapsed(),
        retryable=all(getattr(e, "retryable", False) for e in errors),
    )
    error.__cause__ = ExceptionGroup(f"children of {step.type} step {step.name!r} failed", errors)
    return error
