"""Executors for :class:`stepwatch.Sequence` and for a flow's top level."""

from __future__ import annotations

from typing import Any

import anyio

from .._context import StepContext
from .._outcome import CancelCause
from .._steps import FLOW_TYPE, Sequence, Step
from ._util import raise_error


async def _run_in_order(step: Step, ctx: StepContext) -> list[Any]:
    steps = step.children()
    ctx.track_children(steps)
    values = []
    try:
        for i, child in enumerate(steps):
            outcome = await ctx.run_child(child, index=i)
            if not outcome.ok:
                ctx.close_children(CancelCause.SIBLING_FAILURE)
                raise_error(outcome)
            values.append(outcome.value)
    except anyio.get_cancelled_exc_class():
        ctx.close_children()
        raise
    except Exception:  # a failed child's error: the rest are closed above
        raise
    except BaseException:
        # a KeyboardInterrupt / SystemExit from a child goes on bare (run_child recorded
        # the child's outcome); the steps after it never start, as after a failure
        ctx.close_children(CancelCause.SIBLING_FAILURE)
        raise
    return values


class SequenceExecutor:
    """Runs the children in order; the value is a dict name → value of each child.

    A child failure (or a ``KeyboardInterrupt`` / ``SystemExit``, which is re-raised bare)
    stops the sequence; the children after it are recorded as cancelled with cause
    ``sibling_failure``.
    """

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Sequence)

    async def execute(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        values = await _run_in_order(step, ctx)
        return {child.name: value for child, value in zip(step.children(), values, strict=True)}


class FlowRootExecutor:
    """Runs a flow's top-level steps in order; the value is the last step's value."""

    def can_execute(self, step: Step) -> bool:
        return step.type == FLOW_TYPE

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        values = await _run_in_order(step, ctx)
        return values[-1] if values else None
