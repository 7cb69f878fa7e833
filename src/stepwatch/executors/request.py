"""Executor for :class:`stepwatch.Request`: call the handler registered for ``method``."""

from __future__ import annotations

from typing import Any

from .._context import StepContext
from .._steps import Request, Step
from ._util import call_inline


class RequestExecutor:
    """Calls ``handlers[step.method](params)``; sync handlers run in a worker thread."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Request)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        assert isinstance(step, Request)
        executor = ctx.executor
        invoker = executor._handlers[step.method]
        params = step.params
        if callable(params):
            params = await call_inline(params, ctx)
        if invoker.is_async:  # awaited here: one coroutine frame less per live request
            return await invoker.fn(params)
        return await executor._workers.call(invoker, params, ctx)
