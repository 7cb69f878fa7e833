"""Executor for :class:`stepwatch.Parallel`: one group, one deadline (DESIGN.md §4).

Errors: a single failed child's error is re-raised unchanged (so a ``StepTimeoutError`` of
a tighter inner deadline reaches the caller as such); several failed children raise one
:class:`StepFailedError` whose ``__cause__`` is an ``ExceptionGroup`` of all their errors.

Everything on a child's path is O(1): outcomes go into a list by index; ``partial`` and
``pending`` are computed once, at the end. Children are not started once the deadline has
passed (they are recorded as cancelled with cause ``deadline``); the start loop yields to
the event loop every few children so that the time the started children take counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
from anyio import current_time
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint

from .._checkpoints import cancelled_for_real, deliver_expired
from .._context import StepContext
from .._errors import StepFailedError
from .._outcome import CancelCause, Outcome
from .._steps import Parallel, Step
from ._util import raise_error

_CHECK_EVERY = 32  # look at the clock every N children started


class _Group:
    __slots__ = (
        "ctx",
        "fail_fast",
        "failures",
        "fatal",
        "need",
        "quorum_met",
        "size",
        "stopped",
        "successes",
        "tg",
    )

    def __init__(self, step: Parallel, ctx: StepContext, tg: TaskGroup) -> None:
        self.ctx = ctx
        self.tg = tg
        self.size = len(step.steps)
        self.need = step.min_successes
        self.fail_fast = step.fail_fast
        self.successes = 0
        self.failures: list[Outcome] = []
        self.stopped = False
        self.quorum_met = False
        # a KeyboardInterrupt / SystemExit from a child, re-raised bare by the step
        self.fatal: BaseException | None = None

    def stop(self, cause: CancelCause) -> None:
        self.stopped = True
        self.ctx.cancel_reason = cause
        self.tg.cancel_scope.cancel()

    async def run_one(self, index: int, child: Step) -> None:
        ctx = self.ctx  # _run_step directly: one coroutine frame less per live child
        try:
            outcome = await ctx._run.executor._run_step(child, ctx, index)
        except BaseException as exc:
            if isinstance(exc, Exception) or cancelled_for_real(exc):
                raise
            # not inside the task group: asyncio would let it escape the event loop and
            # anyio would wrap it in an exception group; the step re-raises it bare
            if self.fatal is None:
                self.fatal = exc
            self.stop(CancelCause.SIBLING_FAILURE)
            return
        if self.stopped:
            if not outcome.ok:
                self.failures.append(outcome)
            return
        if outcome.ok:
            self.successes += 1
            if self.need is not None and self.successes >= self.need:
                self.quorum_met = True
                self.stop(CancelCause.QUORUM_MET)
            return
        self.failures.append(outcome)
        if self.need is not None:
            if self.size - len(self.failures) < self.need:  # quorum out of reach
                self.stop(CancelCause.SIBLING_FAILURE)
        elif self.fail_fast:
            self.stop(CancelCause.SIBLING_FAILURE)

    async def worker(self, work: Iterator[tuple[int, Step]]) -> None:
        ctx = self.ctx
        for index, child in work:
            if self.stopped:
                return
            now = current_time()
            if now >= ctx.deadline:
                await deliver_expired(ctx, now)
            await self.run_one(index, child)


class ParallelExecutor:
    """Runs the children concurrently; the value is a dict name → value of the finished."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Parallel)

    async def execute(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        assert isinstance(step, Parallel)
        children = step.children()
        progress = ctx.track_children(children)
        try:
            async with anyio.create_task_group() as tg:
                group = _Group(step, ctx, tg)
                limit = step.max_concurrency
                if limit is None or limit >= len(children):
                    deadline = ctx.deadline
                    for index, child in enumerate(children):
                        if index % _CHECK_EVERY == 0:
                            if index:  # let the started children run their first step,
                                await checkpoint()  # so the clock shows what starting costs
                            now = current_time()
                            if now >= deadline:  # stop starting: the deadline's owner
                                await deliver_expired(ctx, now)  # reports the rest
                        if group.stopped:
                            break
                        tg.start_soon(group.run_one, index, child)
                else:
                    work = iter(enumerate(children))
                    for _ in range(limit):
                        tg.start_soon(group.worker, work)
        except anyio.get_cancelled_exc_class():
            ctx.close_children(ctx.cancel_cause())
            raise
        if group.fatal is not None:
            ctx.close_children(CancelCause.SIBLING_FAILURE)
            raise group.fatal
        if group.quorum_met:
            ctx.close_children(CancelCause.QUORUM_MET)
            return progress.partial()
        if group.failures:
            ctx.close_children(CancelCause.SIBLING_FAILURE)
            if len(group.failures) == 1:  # the child's own error says best what went wrong
                raise_error(group.failures[0])
            raise group_failure(step, ctx, group.failures)
        if None in progress.outcomes:  # only if a deadline moved back while starting
            ctx.close_children(CancelCause.DEADLINE)
        return progress.partial()


def group_failure(step: Step, ctx: StepContext, failures: list[Outcome]) -> StepFailedError:
    """One StepFailedError for several failed children (ExceptionGroup as __cause__)."""
    assert ctx.progress is not None
    errors: list[Exception] = []
    for outcome in failures:
        assert isinstance(outcome.error, Exception)
        errors.append(outcome.error)
    partial = ctx.progress.partial()
    outcomes = ctx.progress.by_name()
    failed = ", ".join(f"{o.name} ({o.status.value})" for o in failures)
    cancelled = [o.name for o in outcomes.values() if o.cause is CancelCause.SIBLING_FAILURE]
    message = (
        f"{step.type} step {step.name!r}: {len(failures)} of {len(ctx.progress.steps)} "
        f"children failed: "
        f"{failed}"
    )
    need = getattr(step, "min_successes", None)
    if need is not None:
        message += f"; min_successes={need} can no longer be reached"
    if partial:
        message += f"; finished: {', '.join(partial)}"
    if cancelled:
        message += f"; cancelled: {', '.join(cancelled)}"
    error = StepFailedError(
        message,
        step_name=step.name,
        step_type=step.type,
        errors=errors,
        partial=partial,
        outcomes=outcomes,
        attempts=ctx.attempt,
        elapsed=current_time() - ctx.started,
        retryable=all(getattr(e, "retryable", False) for e in errors),
    )
    error.__cause__ = ExceptionGroup(f"children of parallel step {step.name!r} failed", errors)
    return error
