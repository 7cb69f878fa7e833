"""Executor for :class:`stepwatch.Parallel`: one group, one deadline.

Errors: a single failed child's error is re-raised unchanged (so a ``StepTimeoutError`` of
a tighter inner deadline reaches the caller as such); several failed children raise one
:class:`StepFailedError` whose ``__cause__`` is an ``ExceptionGroup`` of all their errors.
With ``on_failure="partial"`` (and no ``min_successes``) failed children raise nothing:
the step returns what succeeded and notes the failures (``StepContext.mark_recovered``).

Everything on a child's path is O(1): outcomes go into a list by index; ``partial`` and
``pending`` are computed once, at the end. The start loop yields to the event loop every
few children so that the time the started children take counts, and stops at the
deadline: the deadline's owner then reports every child that never started.

Written only against the public :class:`StepContext` API, as a user's executor would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint_if_cancelled

from .._context import ChildProgress, StepContext
from .._errors import StepTimeoutError
from .._outcome import CancelCause, Outcome, Status
from .._steps import NO_FALLBACK, Parallel, Step
from ._util import children_failed, raise_error

_CHECK_EVERY = 32  # look at the clock every N children started


class _Group:
    __slots__ = (
        "cancelled",
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
        self.cancelled = anyio.get_cancelled_exc_class()
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
        self.ctx.cancel_children(self.tg.cancel_scope, cause)

    async def run_one(self, index: int, child: Step) -> bool:
        """Run one child (in a task of the group); False if it was cancelled or interrupted
        (its outcome is recorded either way): the task must not go on."""
        try:
            outcome = await self.ctx.run_child(child, index=index)
        except self.cancelled:
            # The task ends here, normally. The group ignores a child task's cancellation
            # anyway (the cancelled scope acts in the task that owns it), and a task that
            # ended by raising it would keep its frames, its context and its outcome in a
            # reference cycle (anyio's task_done holds the exception, whose traceback holds
            # that frame) until a full garbage collection: with thousands of children cut
            # off at a deadline, those collections were about half of the step's lateness.
            return False
        except Exception:
            raise
        except BaseException as exc:
            # not inside the task group: asyncio would let it escape the event loop and
            # anyio would wrap it in an exception group; the step re-raises it bare
            if self.fatal is None:
                self.fatal = exc
            self.stop(CancelCause.SIBLING_FAILURE)
            return False
        ok = outcome.ok
        if self.stopped:
            if not ok:
                self.failures.append(outcome)
            return True
        if ok:
            self.successes += 1
            if self.need is not None and self.successes >= self.need:
                self.quorum_met = True
                self.stop(CancelCause.QUORUM_MET)
            return True
        self.failures.append(outcome)
        if self.need is not None:
            if self.size - len(self.failures) < self.need:  # quorum out of reach
                self.stop(CancelCause.SIBLING_FAILURE)
        elif self.fail_fast:
            self.stop(CancelCause.SIBLING_FAILURE)
        return True

    async def worker(self, work: Iterator[tuple[int, Step]]) -> None:
        ctx = self.ctx
        for index, child in work:
            if self.stopped:
                return
            if ctx.remaining() <= 0:
                await ctx.checkpoint()  # the deadline's owner reports the rest
            if not await self.run_one(index, child):
                return


class ParallelExecutor:
    """Runs the children concurrently; the value is a dict name → value of the finished."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Parallel)

    async def execute(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        assert isinstance(step, Parallel)
        children = step.children()
        progress = ctx.track_children(children)
        if step.on_timeout == "partial":
            ctx.on_timeout(lambda error: _partial(step, ctx, progress, error))
        try:
            async with anyio.create_task_group() as tg:
                group = _Group(step, ctx, tg)
                limit = step.max_concurrency
                if limit is None or limit >= len(children):
                    for index, child in enumerate(children):
                        if index % _CHECK_EVERY == 0:
                            if index:  # let the started children run their first step,
                                await ctx.checkpoint()  # so the clock shows what starting
                            elif ctx.remaining() <= 0:  # costs; at the deadline
                                await ctx.checkpoint()  # its owner reports the rest
                        if group.stopped:
                            break
                        tg.start_soon(group.run_one, index, child)
                else:
                    work = iter(enumerate(children))
                    for _ in range(limit):
                        tg.start_soon(group.worker, work)
            # The children end normally when cancelled (see run_one), so on trio a group
            # whose scope was cancelled while they ran may exit without raising: ask.
            await checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            ctx.close_children()
            raise
        if group.fatal is not None:
            ctx.close_children(CancelCause.SIBLING_FAILURE)
            raise group.fatal
        if group.quorum_met:
            ctx.close_children(CancelCause.QUORUM_MET)
            if group.failures:
                ctx.mark_recovered(children_failed(step, ctx, progress, group.failures))
            return progress.partial()
        if group.failures and step.on_failure == "partial" and step.min_successes is None:
            # degrade: whatever succeeded; the failed children keep their own outcomes
            ctx.mark_recovered(children_failed(step, ctx, progress, group.failures))
        elif group.failures:
            ctx.close_children(CancelCause.SIBLING_FAILURE)
            if len(group.failures) == 1:  # the child's own error says best what went wrong
                raise_error(group.failures[0])
            raise children_failed(step, ctx, progress, group.failures, need=step.min_successes)
        if any(o is None for o in progress.outcomes):  # only if a deadline moved back
            ctx.close_children(CancelCause.DEADLINE)
        return progress.partial()


def _partial(
    step: Parallel, ctx: StepContext, progress: ChildProgress, error: BaseException
) -> Any:
    """``on_timeout="partial"``: the finished results, and the fallbacks of cut-off
    children whose fallback covers a timeout (``fallback_on`` with ``"timeout"``); but
    children that failed before the deadline still raise, unless the step degrades
    (``on_failure="partial"``)."""
    failures = [
        o
        for o in progress.outcomes
        if o is not None and not o.ok and o.status in (Status.FAILED, Status.TIMED_OUT)
    ]
    if step.on_failure == "partial":
        failures.clear()
    if len(failures) == 1:
        raise_error(failures[0])
    if failures:
        raise children_failed(step, ctx, progress, failures, need=step.min_successes)
    assert isinstance(error, StepTimeoutError)
    partial: dict[str, Any] = {}
    for i, outcome in enumerate(progress.outcomes):
        if outcome is None:
            continue
        child = progress.steps[i]
        if outcome.ok:
            partial[outcome.name] = outcome.value
        elif (
            outcome.status is Status.CANCELLED
            and child.fallback is not NO_FALLBACK
            # cut off, it did not fail: a failure-only fallback does not apply
            and "timeout" in child.fallback_triggers
        ):
            replaced = Outcome(
                outcome.name,
                outcome.step_type,
                Status.FALLBACK,
                child.fallback,
                None,
                outcome.elapsed,
                outcome.attempts,
                CancelCause.DEADLINE,
                outcome.timeout,
                True,
                outcome.overrun,
            )
            progress.outcomes[i] = replaced
            ctx.record_replaced(replaced)
            partial[outcome.name] = child.fallback
    return partial
