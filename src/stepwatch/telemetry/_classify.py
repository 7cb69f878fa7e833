"""One classification of how a step ended, shared by every telemetry decorator.

A decorator calls :func:`classify` after the wrapped executor returned (``exc=None``) or
raised, with the step's context; spans, metric labels and log events then agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from anyio import current_time

from .._errors import StepFailedError, StepwatchError
from .._outcome import CancelCause, Status

if TYPE_CHECKING:
    from .._context import StepContext
    from .._steps import Step

__all__ = ["SUCCESS", "arose_here", "classify", "error_type", "raised_here"]

SUCCESS = "success"
FAILURE = "failure"
TIMEOUT = "timeout"
CANCELLATION = "cancellation"


def classify(ctx: StepContext, exc: BaseException | None) -> tuple[str, CancelCause | None]:
    """Return ``(outcome, cause)``: outcome ∈ success/failure/timeout/cancellation.

    ``timeout`` only for the step that owns the expired deadline (and for a step that
    returned a fallback or partial results after its own deadline expired); a step cut off
    by an enclosing deadline is a ``cancellation`` with cause ``deadline``.
    """
    if exc is None:
        status = ctx.status
        if status is None or status is Status.SUCCEEDED:
            return SUCCESS, None
        return TIMEOUT, None  # fallback or on_timeout="partial"
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        if ctx.scoped and current_time() >= ctx.own_deadline:
            return CANCELLATION, CancelCause.DEADLINE
        parent = ctx.parent
        return CANCELLATION, parent.cancel_cause() if parent is not None else CancelCause.OUTSIDE
    if ctx.status is Status.TIMED_OUT:
        return TIMEOUT, None
    return FAILURE, None


def error_type(outcome: str, exc: BaseException | None) -> str | None:
    """The ``error.type`` value: ``"timeout"``, the exception's qualified class, or None."""
    if outcome == TIMEOUT:
        return "timeout"
    if outcome != FAILURE or exc is None:
        return None
    cls = type(exc)
    module = cls.__module__
    if module.startswith("stepwatch."):
        module = "stepwatch"
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def raised_here(ctx: StepContext, exc: BaseException) -> bool:
    """False when ``exc`` is a child's error passing through (record it only once)."""
    if isinstance(exc, StepwatchError) and exc.step_name is not None:
        step = ctx.step
        return step is not None and exc.step_name == step.name
    return True


def arose_here(step: Step, ctx: StepContext, exc: BaseException) -> bool:
    """True when ``exc`` arose in this step: not a child's error passing through, and
    not a composite's summary of its children's errors (those are recorded where they
    arose; the summary is in the status description). Record/log an exception only then."""
    if not raised_here(ctx, exc):
        return False
    if isinstance(exc, StepFailedError) and exc.errors:
        return not all(
            isinstance(e, StepwatchError) and e.step_name is not None and e.step_name != step.name
            for e in exc.errors
        )
    return True
