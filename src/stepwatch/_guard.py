"""The deadline guard: the innermost wrapper of every registered executor.

It owns a step's deadline (one anyio cancel scope, opened only when the step's own
deadline is earlier than what its parent has left), turns the expiry of that deadline into
:class:`StepTimeoutError` / :class:`FlowTimeoutError`, retries retryable errors with
backoff that never sleeps past the enclosing deadline, and applies ``fallback`` and
``on_timeout="partial"``.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

from anyio import CancelScope, current_time, sleep

from ._checkpoints import cancelled_for_real, deliver_expired
from ._errors import FlowTimeoutError, StepFailedError, StepTimeoutError
from ._outcome import CancelCause, Outcome, Status
from ._steps import NO_FALLBACK, Step

if TYPE_CHECKING:
    from ._context import StepContext
    from ._protocols import StepExecutor

__all__ = ["DeadlineGuard"]


def _fmt(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "no limit"
    return f"{seconds:.3g} s"


class DeadlineGuard:
    """Wraps ``inner`` with deadline ownership, retries and fallbacks (see module doc)."""

    __slots__ = ("inner",)

    def __init__(self, inner: StepExecutor) -> None:
        self.inner = inner

    def can_execute(self, step: Step) -> bool:
        return self.inner.can_execute(step)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        policy = step.retry_policy
        inner = self.inner
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                _restart(ctx)
            ctx.attempt = attempt
            error: Exception
            failed: Exception | None = None
            try:
                if not ctx.scoped:
                    try:
                        value = await inner.execute(step, ctx)
                    except asyncio.CancelledError as exc:
                        if cancelled_for_real(exc):
                            raise
                        failed = _spurious_cancel(step, ctx, exc)
                    except Exception as exc:
                        failed = exc
                    await _cut_off(ctx, current_time(), failed if failed is not None else value)
                    if failed is not None:
                        raise failed
                    return value
                with CancelScope(deadline=ctx.own_deadline) as scope:
                    ctx.scope = scope
                    try:
                        value = await inner.execute(step, ctx)
                    except asyncio.CancelledError as exc:
                        if cancelled_for_real(exc):
                            raise
                        failed = _spurious_cancel(step, ctx, exc)
                    except Exception as exc:
                        failed = exc
                    end = current_time()
                if scope.cancelled_caught:  # stopped by its own deadline
                    await _cut_off(ctx, current_time(), None, produced=False)
                    error = _timeout_error(step, ctx)
                else:
                    await _cut_off(ctx, end, failed if failed is not None else value)
                    if end < ctx.own_deadline:
                        if failed is not None:
                            raise failed
                        return value
                    # it returned or raised after its own deadline instead of being stopped
                    _overran(ctx, end - ctx.own_deadline, failed if failed is not None else value)
                    error = _timeout_error(step, ctx)
                    if failed is not None:
                        error.__cause__ = failed
            except Exception as exc:
                error = exc
            # a failed or timed-out attempt
            if policy is None or attempt >= policy.attempts or not policy.retry_on(error):
                break
            delay = policy.delay(attempt)
            parent = ctx.parent
            limit = parent.deadline if parent is not None else math.inf
            if current_time() + delay >= limit:
                if isinstance(error, StepTimeoutError | FlowTimeoutError):
                    error.message += "; no retry: the next attempt would start after the deadline"
                break
            await sleep(delay)
        return _give_up(step, ctx, error)


def _overran(ctx: StepContext, seconds: float, produced: Any) -> None:
    """Note that ``ctx``'s step ended ``seconds`` after the deadline governing it."""
    ctx.overrun = max(0.0, seconds)
    ctx.late = produced
    ctx._run.overruns.append(ctx)


async def _cut_off(ctx: StepContext, end: float, result: Any, *, produced: bool = True) -> None:
    """If a deadline enclosing ``ctx``'s step passed before the step ended at ``end``, the
    step is cut off by it: raise the cancellation (its owner reports the timeout).

    ``result`` is what the step produced (a value or an exception) when ``produced``; the
    step then overran the deadline and that is recorded. Returns when no enclosing
    deadline has passed.
    """
    parent = ctx.parent
    if parent is None or end < parent.deadline:
        return
    if produced:
        _overran(ctx, end - parent.deadline, result)
    await deliver_expired(parent, end)


def _spurious_cancel(step: Step, ctx: StepContext, exc: BaseException) -> StepFailedError:
    """A handler raised a cancellation exception although nothing cancelled it: a failure."""
    error = StepFailedError(
        f"{step.type} step {step.name!r} failed: it raised {type(exc).__name__} although "
        "nothing cancelled it",
        step_name=step.name,
        step_type=step.type,
        errors=(exc,),
        attempts=ctx.attempt,
        elapsed=current_time() - ctx.started,
    )
    error.__cause__ = exc
    return error


def _restart(ctx: StepContext) -> None:
    """Give the next attempt a fresh own deadline, still clamped by the parent's."""
    now = current_time()
    ctx.progress = None
    ctx.status = None
    ctx.error = None
    ctx.cancel_reason = None
    ctx.scope = None
    ctx.overrun = None
    ctx.late = None
    parent_deadline = ctx.parent.deadline if ctx.parent is not None else math.inf
    own = now + ctx.timeout if ctx.timeout is not None else math.inf
    ctx.own_deadline = own
    ctx.scoped = own < parent_deadline
    ctx.deadline = own if ctx.scoped else parent_deadline


def _give_up(step: Step, ctx: StepContext, error: Exception) -> Any:
    """After the last attempt: fallback, partial results, or raise."""
    timed_out = isinstance(error, StepTimeoutError | FlowTimeoutError) and ctx.status is (
        Status.TIMED_OUT
    )
    if timed_out and step.fallback is not NO_FALLBACK:
        ctx.status = Status.FALLBACK
        ctx.error = error
        return step.fallback
    if timed_out and getattr(step, "on_timeout", None) == "partial":
        assert isinstance(error, StepTimeoutError)
        _raise_child_failures(step, ctx)
        ctx.error = error
        return _partial_with_fallbacks(ctx, error)
    raise error


def _raise_child_failures(step: Step, ctx: StepContext) -> None:
    """``on_timeout="partial"`` forgives the timeout, not children that failed before it."""
    progress = ctx.progress
    if progress is None or not hasattr(progress, "steps"):
        return
    failures = [
        o
        for o in progress.outcomes
        if o is not None and not o.ok and o.status in (Status.FAILED, Status.TIMED_OUT)
    ]
    if not failures:
        return
    ctx.status = None  # the step failed; its deadline is not what it reports
    if len(failures) == 1:
        assert isinstance(failures[0].error, Exception)
        raise failures[0].error
    from .executors.parallel import group_failure

    raise group_failure(step, ctx, failures)


def _partial_with_fallbacks(ctx: StepContext, error: StepTimeoutError) -> dict[str, Any]:
    """Partial results where cut-off children with a ``fallback`` yield their fallback."""
    progress = ctx.progress
    if progress is None or not hasattr(progress, "steps"):
        return dict(error.partial)
    partial: dict[str, Any] = {}
    for i, outcome in enumerate(progress.outcomes):
        if outcome is None:
            continue
        child: Step = progress.steps[i]
        if outcome.ok:
            partial[outcome.name] = outcome.value
        elif outcome.status is Status.CANCELLED and child.fallback is not NO_FALLBACK:
            replaced = Outcome(
                name=outcome.name,
                step_type=outcome.step_type,
                status=Status.FALLBACK,
                value=child.fallback,
                elapsed=outcome.elapsed,
                attempts=outcome.attempts,
                cause=CancelCause.DEADLINE,
                timeout=outcome.timeout,
                recovered=True,
            )
            progress.outcomes[i] = replaced
            ctx.record_replaced(replaced)
            partial[outcome.name] = child.fallback
    return partial


def _timeout_error(step: Step, ctx: StepContext) -> StepTimeoutError | FlowTimeoutError:
    """Build the error for the step that owns the expired deadline."""
    ctx.status = Status.TIMED_OUT
    elapsed = current_time() - ctx.started
    progress = ctx.progress
    partial = progress.partial() if progress is not None else {}
    pending = progress.pending() if progress is not None else []
    outcomes = progress.by_name() if progress is not None else {}
    timeout = ctx.timeout if ctx.timeout is not None else math.inf
    if progress is not None and hasattr(progress, "steps"):
        total = len(progress.steps)
        detail = f"; {len(partial)} of {total} children finished"
        if partial:
            detail += f" ({', '.join(partial)})"
        if pending:
            detail += f"; still pending: {', '.join(pending)}"
    else:
        detail = ""
    detail += _overrun_detail(ctx)
    attempts = f" (attempt {ctx.attempt})" if ctx.attempt > 1 else ""
    if step.type == "flow":
        return FlowTimeoutError(
            f"flow {step.name!r} timed out after {elapsed:.3f} s: its deadline of "
            f"{_fmt(timeout)} expired{detail}",
            flow_name=step.name,
            timeout=timeout,
            elapsed=elapsed,
            partial=partial,
            pending=pending,
            outcomes=outcomes,
            overrun=ctx.overrun,
        )
    return StepTimeoutError(
        f"{step.type} step {step.name!r} timed out after {elapsed:.3f} s{attempts}: its own "
        f"deadline of {_fmt(timeout)} expired{detail}",
        step_name=step.name,
        step_type=step.type,
        timeout=timeout,
        elapsed=elapsed,
        partial=partial,
        pending=pending,
        outcomes=outcomes,
        overrun=ctx.overrun,
    )


_MAX_NAMED = 10


def _overrun_detail(ctx: StepContext) -> str:
    """Name the steps under ``ctx`` (and ``ctx`` itself) that ran past their deadline."""
    if ctx.overrun is not None:
        return (
            f"; it overran its deadline by {ctx.overrun:.3f} s: it returned instead of "
            "being stopped (it held the event loop or ignored the cancellation)"
        )
    named = []
    for late in ctx._run.overruns:
        parent = late.parent
        while parent is not None and parent is not ctx:
            parent = parent.parent
        if parent is ctx and late.step is not None and late.overrun is not None:
            named.append(f"{late.step.name} (+{late.overrun:.3f} s)")
    if not named:
        return ""
    more = f" and {len(named) - _MAX_NAMED} more" if len(named) > _MAX_NAMED else ""
    return (
        f"; overran the deadline (held the event loop or ignored the cancellation): "
        f"{', '.join(named[:_MAX_NAMED])}{more}"
    )
