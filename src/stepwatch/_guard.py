"""The deadline guard: the innermost wrapper of every registered executor.

It owns a step's deadline (one anyio cancel scope, opened only when the step's own
deadline is earlier than what its parent has left), turns the expiry of that deadline into
:class:`StepTimeoutError` / :class:`FlowTimeoutError`, treats a value or error that
arrives after the deadline governing it as what it is (see ``_checkpoints``), retries
retryable errors with backoff that never sleeps past the enclosing deadline (and waits at
least what a server asked for with ``Retry-After``), and applies ``fallback`` (on the
step's own timeout, or also on its failure with ``fallback_on``) and the executor's
timeout recovery (``StepContext.on_timeout``). It knows no particular step type.
"""

from __future__ import annotations

import asyncio
import math
import sys
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from anyio import CancelScope, sleep

from ._checkpoints import cancelled_for_real, deliver_expired
from ._context import ChildProgress, describe_children
from ._errors import (
    DeadlineExceededError,
    FlowTimeoutError,
    StepFailedError,
    StepTimeoutError,
    StepwatchError,
)
from ._outcome import Status
from ._retry import retryable
from ._steps import FLOW_TYPE, NO_FALLBACK, Step
from ._text import clip, listing, message_of

if TYPE_CHECKING:
    from ._context import StepContext
    from ._protocols import StepExecutor

__all__ = ["DeadlineGuard", "is_worth_retrying", "step_failed"]


def _fmt(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "no limit"
    return f"{seconds:.3g} s"


class DeadlineGuard:
    """Wraps ``inner`` with deadline ownership, retries and fallbacks (see module doc)."""

    __slots__ = ("inner",)

    def __init__(self, inner: StepExecutor) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"guarded({self.inner!r})"

    def can_execute(self, step: Step) -> bool:
        return self.inner.can_execute(step)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        clock = ctx._run.clock
        try:
            policy = step.retry_policy
            inner = self.inner
            while True:
                ctx._attempt += 1
                if ctx._attempt > 1:
                    ctx._begin_attempt(clock())
                error: Exception
                failed: Exception | None = None
                try:
                    if not ctx._scoped:
                        try:
                            value = await inner.execute(step, ctx)
                        except asyncio.CancelledError as exc:
                            if cancelled_for_real(exc):
                                raise
                            failed = _spurious_cancel(step, ctx, exc)
                        except Exception as exc:
                            failed = exc
                        end = ctx._end = clock()
                        if end >= ctx._deadline:  # after the enclosing deadline: cut off
                            await _cut_off(ctx, end, failed if failed is not None else value)
                        if failed is not None:
                            raise failed
                        return value
                    with CancelScope(deadline=ctx._own_deadline) as scope:
                        ctx._scope = scope
                        try:
                            value = await inner.execute(step, ctx)
                        except asyncio.CancelledError as exc:
                            if cancelled_for_real(exc):
                                raise
                            failed = _spurious_cancel(step, ctx, exc)
                        except Exception as exc:
                            failed = exc
                        end = clock()
                    ctx._scope = None
                    if scope.cancelled_caught:
                        end = clock()
                    ctx._end = end
                    parent = ctx._parent
                    if scope.cancelled_caught:  # stopped by its own deadline
                        if parent is not None and end >= parent._deadline:
                            await _cut_off(ctx, end, None, produced=False)
                        error = _timeout_error(step, ctx)
                    else:
                        if parent is not None and end >= parent._deadline:
                            await _cut_off(ctx, end, failed if failed is not None else value)
                        if end < ctx._own_deadline:
                            if failed is not None:
                                raise failed
                            return value
                        # it returned or raised after its own deadline instead of being stopped
                        _overran(
                            ctx, end - ctx._own_deadline, failed if failed is not None else value
                        )
                        error = _timeout_error(step, ctx)
                        if failed is not None:
                            error.__cause__ = failed
                except Exception as exc:
                    error = exc
                # a failed or timed-out attempt
                if policy is None or ctx._attempt >= policy.attempts:
                    break
                if not retryable(policy, error):
                    ctx._verdict = (error, False)
                    break
                ctx._verdict = (error, True)  # kept if it is not retried after all
                delay = policy.delay(ctx._attempt)
                try:
                    asked = policy.asked_delay(error)
                except Exception:  # a hostile header or error: no asked wait; the step's
                    asked = None  # own error is what it raises, never this one
                if asked is not None:
                    delay = max(delay, asked)
                parent = ctx._parent
                limit = parent._deadline if parent is not None else math.inf
                now = clock()
                if limit != math.inf and now + delay >= limit:
                    reason = "the next attempt would start after the deadline"
                    if asked is not None and asked >= delay:
                        reason += (
                            f" (the server asked to wait {asked:.3g} s with Retry-After; "
                            f"{max(0.0, limit - now):.3g} s were left)"
                        )
                    _no_retry(error, reason)
                    break
                if asked is not None and asked > policy.max_delay:
                    _no_retry(
                        error,
                        f"the server asked to wait {asked:.3g} s (Retry-After), more than "
                        f"Retry.max_delay ({policy.max_delay:.3g} s)",
                    )
                    break
                _backing_off(ctx)
                await sleep(delay)
            return _give_up(step, ctx, error)

        except BaseException:
            if ctx._end != ctx._end:  # nan: a cancellation (or interrupt) passing through
                ctx._end = clock()
            raise


def _backing_off(ctx: StepContext) -> None:
    """Between attempts the step has no deadline of its own (the last attempt's has passed
    or no longer applies): a cancellation during the backoff comes from its parent, whose
    cause it gets, and ends the step when it arrives."""
    parent = ctx._parent
    ctx._scoped = False
    ctx._own_deadline = math.inf
    ctx._deadline = parent._deadline if parent is not None else math.inf
    ctx._overrun = None
    ctx._late = None
    ctx._end = math.nan


def _overran(ctx: StepContext, seconds: float, produced: Any) -> None:
    """Note that ``ctx``'s step ended ``seconds`` after the deadline governing it."""
    ctx._overrun = max(0.0, seconds)
    ctx._late = produced
    overruns = ctx._run.overruns
    # a retried step that overran on an earlier attempt is listed already: it is named
    # once, with its latest overrun (a first attempt cannot be listed: no scan)
    if ctx._attempt == 1 or ctx not in overruns:
        overruns.append(ctx)


async def _cut_off(ctx: StepContext, end: float, result: Any, *, produced: bool = True) -> None:
    """A deadline enclosing ``ctx``'s step passed before the step ended at ``end``: the step
    is cut off by it. Raise the cancellation (the deadline's owner reports the timeout).

    ``result`` is what the step produced (a value or an exception) when ``produced``; the
    step then overran the deadline and that is recorded. Returns only if no enclosing
    deadline turned out to have passed.
    """
    parent = ctx._parent
    if parent is None or end < parent._deadline:
        return
    if produced:
        _overran(ctx, end - parent._deadline, result)
    await deliver_expired(parent, end)


def _spurious_cancel(step: Step, ctx: StepContext, exc: BaseException) -> StepFailedError:
    """A handler raised a cancellation exception although nothing cancelled it: a failure."""
    error = StepFailedError(
        f"{step.type} step {step.name!r} failed: it raised {type(exc).__name__} although "
        "nothing cancelled it",
        step_name=step.name,
        step_type=step.type,
        errors=(exc,),
        attempts=ctx._attempt,
        elapsed=ctx._run.clock() - ctx._started,
    )
    error.__cause__ = exc
    return error


def _with_stack(error: BaseException) -> None:
    """Give an error that is recorded but never raised (a timeout hidden by a fallback or
    partial results) the traceback of where it happened, for the span's exception event."""
    if error.__traceback__ is not None:
        return
    tb: TracebackType | None = None
    frame: FrameType | None = sys._getframe(1)  # the guard, then outwards: each outer
    while frame is not None:  # frame's entry wraps the inner one
        tb = TracebackType(tb, frame, frame.f_lasti, frame.f_lineno)
        frame = frame.f_back
    error.__traceback__ = tb


def _no_retry(error: Exception, reason: str) -> None:
    """Say on the error that is about to be raised why it was not retried."""
    text = f"no retry: {reason}"
    if isinstance(error, StepwatchError):
        if text not in error.message:
            error.message += f"; {text}"
        return
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):  # an instance raised again: one reason, the latest
        notes[:] = [note for note in notes if not str(note).startswith("no retry: ")]
    error.add_note(text)  # shown with its traceback (it is the caller's __cause__)


def _give_up(step: Step, ctx: StepContext, error: Exception) -> Any:
    """After the last attempt: the fallback, the executor's recovery, or raise."""
    has_fallback = step.fallback is not NO_FALLBACK
    if ctx._status is Status.TIMED_OUT and isinstance(error, DeadlineExceededError):
        if has_fallback and "timeout" in step.fallback_triggers:
            _with_stack(error)
            ctx._status = Status.FALLBACK
            ctx._error = error
            return step.fallback
        recover = ctx._recover
        if recover is not None:
            try:
                value = recover(error)
            except BaseException:
                ctx._status = None  # the recovery raised: that is how the step ends
                raise
            _with_stack(error)
            ctx._error = error
            return value
    elif has_fallback and "failure" in step.fallback_triggers:
        ctx._status = Status.FALLBACK
        ctx._error = _failure(step, ctx, error)
        return step.fallback
    raise error


def _failure(step: Step, ctx: StepContext, error: Exception) -> StepFailedError:
    """The error a failure fallback replaced, as the StepFailedError the step would have
    raised (its ``__cause__`` is ``error``); telemetry tells a failure fallback from a
    timeout fallback by it."""
    return step_failed(step, ctx, error, ctx._run.clock() - ctx._started, "; its fallback was used")


def step_failed(
    step: Step, ctx: StepContext, error: Exception, elapsed: float, note: str = ""
) -> StepFailedError:
    """The StepFailedError of ``step``, which raised ``error`` (its ``__cause__``); the
    names and the message are clipped, so that a huge one stays bounded."""
    wrapped = StepFailedError(
        f"{step.type} step {clip(step.name, 200)!r} failed: "
        f"{type(error).__name__}: {clip(message_of(error))}{note}",
        step_name=step.name,
        step_type=step.type,
        errors=(error,),
        attempts=ctx._attempt,
        elapsed=elapsed,
        retryable=is_worth_retrying(step, ctx, error),
    )
    wrapped.__cause__ = error
    return wrapped


def is_worth_retrying(step: Step, ctx: StepContext, error: BaseException) -> bool:
    """Whether ``error``, which ended ``step``, was worth retrying (a StepFailedError's
    ``retryable``): what the guard's retry predicate said of it, or asked now if the guard
    did not ask (no attempts left), so that the predicate runs once per error."""
    verdict = ctx._verdict
    if verdict is not None and verdict[0] is error:
        return verdict[1]
    return retryable(step.retry_policy, error)


def _timeout_error(step: Step, ctx: StepContext) -> StepTimeoutError | FlowTimeoutError:
    """Build the error for the step that owns the expired deadline."""
    ctx._status = Status.TIMED_OUT
    elapsed = ctx._end - ctx._started
    progress = ctx._progress
    partial = progress.partial() if progress is not None else {}
    pending = progress.pending() if progress is not None else []
    outcomes = progress.by_name() if progress is not None else {}
    timeout = ctx._timeout if ctx._timeout is not None else math.inf
    if isinstance(progress, ChildProgress):  # its parts are computed above: not twice
        detail = describe_children(len(progress.steps), partial, pending)
    else:
        detail = progress.describe() if progress is not None else ""
    detail += _overrun_detail(ctx)
    attempts = f" (attempt {ctx._attempt})" if ctx._attempt > 1 else ""
    if step.type == FLOW_TYPE:
        return FlowTimeoutError(
            f"flow {step.name!r} timed out after {elapsed:.3f} s: its deadline of "
            f"{_fmt(timeout)} expired{detail}",
            flow_name=step.name,
            timeout=timeout,
            elapsed=elapsed,
            partial=partial,
            pending=pending,
            outcomes=outcomes,
            overrun=ctx._overrun,
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
        overrun=ctx._overrun,
    )


def _overrun_detail(ctx: StepContext) -> str:
    """Name the steps under ``ctx`` (or ``ctx`` itself) that ran past their deadline."""
    if ctx._overrun is not None:
        return (
            f"; it overran its deadline by {ctx._overrun:.3f} s: it returned instead of "
            "being stopped (it held the event loop or ignored the cancellation)"
        )
    named = []
    for late in ctx._run.overruns:
        parent = late._parent
        while parent is not None and parent is not ctx:
            parent = parent._parent
        if parent is ctx and late._step is not None and late._overrun is not None:
            named.append(f"{clip(late._step.name, 200)} (+{late._overrun:.3f} s)")
    if not named:
        return ""
    return (
        f"; overran the deadline (held the event loop or ignored the cancellation): "
        f"{listing(named)}"
    )
