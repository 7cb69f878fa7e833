"""Executor for :class:`stepwatch.Delay`."""

from __future__ import annotations

import anyio

from .._context import StepContext
from .._steps import Delay, Step


class DelayExecutor:
    """Sleeps for ``step.seconds`` (cut short by any deadline)."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Delay)

    async def execute(self, step: Step, ctx: StepContext) -> None:
        assert isinstance(step, Delay)
        await anyio.sleep(step.seconds)
