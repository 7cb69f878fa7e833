"""Executor for :class:`stepwatch.Transform`: compute a value with ``fn(ctx)``."""

from __future__ import annotations

from typing import Any

from .._context import StepContext
from .._steps import Step, Transform


class TransformExecutor:
    """Awaits an async ``fn``; runs a sync one in a worker thread (or inline if asked)."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Transform)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        assert isinstance(step, Transform)
        return await ctx.call(step.fn, ctx, inline=step.inline)
