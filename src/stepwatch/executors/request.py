"""Executor for :class:`stepwatch.Request`: call the handler registered for ``method``."""

from __future__ import annotations

from typing import Any

from .._context import StepContext
from .._steps import Request, Step


class RequestExecutor:
    """Calls ``handlers[step.method](params)``; sync handlers run in a worker thread."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Request)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        assert isinstance(step, Request)
        params = step.params
        if callable(params):
            params = await ctx.call(params, ctx, inline=True)
        return await ctx.call_handler(step.method, params)
