"""Executor for :class:`stepwatch.Branch`."""

from __future__ import annotations

from typing import Any

from .._context import StepContext
from .._steps import Branch, Step
from ._util import raise_error


class BranchExecutor:
    """Evaluates ``condition(ctx)`` inline and runs ``then`` or ``otherwise``."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Branch)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        assert isinstance(step, Branch)
        chosen = step.then if await ctx.call(step.condition, ctx, inline=True) else step.otherwise
        if chosen is None:
            return None
        ctx.track_children((chosen,))
        outcome = await ctx.run_child(chosen, index=0)
        if not outcome.ok:
            raise_error(outcome)
        return outcome.value
