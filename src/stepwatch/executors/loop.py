"""Executor for :class:`stepwatch.Loop`."""

from __future__ import annotations

from typing import Any

from .._context import StepContext
from .._outcome import Outcome
from .._steps import Loop, Step
from ._util import call_inline, raise_error


class _LoopProgress:
    """What a timed-out loop reports: the values of the iterations that finished."""

    __slots__ = ("body", "running", "values")

    def __init__(self, body: Step) -> None:
        self.body = body
        self.values: list[Any] = []
        self.running = False

    def partial(self) -> dict[str, Any]:
        return {self.body.name: list(self.values)} if self.values else {}

    def pending(self) -> list[str]:
        return [self.body.name] if self.running else []

    def by_name(self) -> dict[str, Outcome]:
        return {}

    def record(self, index: int, outcome: Outcome) -> None:  # pragma: no cover - unused
        pass


class LoopExecutor:
    """Runs ``body`` while ``condition(ctx)`` holds, up to ``times`` / ``max_iterations``."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Loop)

    async def execute(self, step: Step, ctx: StepContext) -> list[Any]:
        assert isinstance(step, Loop)
        limit = step.iteration_limit
        progress = _LoopProgress(step.body)
        ctx.progress = progress  # type: ignore[assignment]  # same reading interface
        for i in range(limit):
            ctx.iteration = i
            if step.condition is not None and not await call_inline(step.condition, ctx):
                break
            progress.running = True
            outcome = await ctx.run_child(step.body)
            progress.running = False
            if not outcome.ok:
                raise_error(outcome)
            progress.values.append(outcome.value)
        return progress.values
