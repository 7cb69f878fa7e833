"""Small helpers shared by the composite executors."""

from __future__ import annotations

import inspect
from typing import Any, NoReturn

from .._context import StepContext
from .._outcome import Outcome
from .._workers import invoker_for


def raise_error(outcome: Outcome) -> NoReturn:
    """Re-raise the error of a child outcome that did not produce a value."""
    assert outcome.error is not None, outcome
    raise outcome.error


async def call_inline(fn: Any, ctx: StepContext) -> Any:
    """Call a condition/params callable inline: awaited if async, called if sync."""
    invoker = invoker_for(fn)
    value = invoker.fn(ctx)
    if invoker.is_async or inspect.isawaitable(value):
        value = await value
    return value
