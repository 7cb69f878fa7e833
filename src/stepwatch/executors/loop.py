"""Executor for :class:`stepwatch.Loop`."""

from __future__ import annotations

from typing import Any

from .._context import StepContext
from .._outcome import Outcome
from .._steps import Loop, Step
from ._util import raise_error


class _LoopProgress:
    """What a timed-out loop reports: the values of the iterations that finished."""

    __slots__ = ("body", "outcomes", "running", "values")

    def __init__(self, body: Step) -> None:
        self.body = body
        self.values: list[Any] = []
        self.running = False
        self.outcomes: list[Outcome | None] = []  # iterations are not a fixed list

    def partial(self) -> dict[str, Any]:
        return {self.body.name: list(self.values)} if self.values else {}

    def pending(self) -> list[str]:
        return [self.body.name] if self.running else []

    def by_name(self) -> dict[str, Outcome]:
        return {}

    def describe(self) -> str:
        done = len(self.values)
        detail = f"; {done} iteration{'s' if done != 1 else ''} of {self.body.name!r} finished"
        return detail + (f"; still pending: {self.body.name}" if self.running else "")


class LoopExecutor:
    """Runs ``body`` while ``condition(ctx)`` holds, ``times`` times at most (or up to
    ``max_iterations``); the value is the list of the body's values."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Loop)

    async def execute(self, step: Step, ctx: StepContext) -> list[Any]:
        assert isinstance(step, Loop)
        progress = _LoopProgress(step.body)
        ctx.track(progress)
        condition = step.condition
        for i in range(step.iteration_limit):
            ctx.set_iteration(i)
            if condition is not None and not await ctx.call(condition, ctx, inline=True):
                break
            if ctx.remaining() <= 0:  # the condition held the loop past the deadline: the
                await ctx.checkpoint()  # body never starts, so it is not named as pending
            progress.running = True
            outcome = await ctx.run_child(step.body)
            progress.running = False
            if not outcome.ok:
                raise_error(outcome)
            progress.values.append(outcome.value)
        return progress.values
