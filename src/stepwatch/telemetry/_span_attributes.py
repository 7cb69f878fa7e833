"""The names stepwatch's spans use (attribute keys, event names, length limits) and the
attributes a step's span starts with, built once per step definition.

Every key and event is documented in ``docs/telemetry.md``; the span's lifecycle is in
``_tracing``, what a finished span says in ``_span_end``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._text import clip

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from .._context import StepContext
    from .._steps import Step

FLOW_NAME: Final = "stepwatch.flow.name"
RUN_ID: Final = "stepwatch.run.id"
STEP_NAME: Final = "stepwatch.step.name"
STEP_TYPE: Final = "stepwatch.step.type"
STEP_TIMEOUT: Final = "stepwatch.step.timeout"
EFFECTIVE_TIMEOUT: Final = "stepwatch.step.effective_timeout"
STEP_OUTCOME: Final = "stepwatch.step.outcome"
STEP_ATTEMPTS: Final = "stepwatch.step.attempts"
STEP_ELAPSED: Final = "stepwatch.step.elapsed"
STEP_BUDGET_RATIO: Final = "stepwatch.step.budget_ratio"
STEP_OVERRUN: Final = "stepwatch.step.overrun"
CANCEL_CAUSE: Final = "stepwatch.cancel.cause"
CHILD_INDEX: Final = "stepwatch.parallel.child.index"
LOOP_ITERATION: Final = "stepwatch.loop.iteration"
TRACE_CHILDREN: Final = "stepwatch.parallel.trace_children"
CHILDREN_TOTAL: Final = "stepwatch.parallel.children.total"
CHILDREN_PREFIX: Final = "stepwatch.parallel.children."
PENDING: Final = "stepwatch.pending"
PENDING_COUNT: Final = "stepwatch.pending.count"
ERROR_TYPE: Final = "error.type"
EVENT_NEAR_TIMEOUT: Final = "stepwatch.near_timeout"
EVENT_TIMEOUT: Final = "stepwatch.timeout"
EVENT_OVERRUN: Final = "stepwatch.overrun"

EVENT_EXCEPTION: Final = "exception"

NAME_LIMIT: Final = 256
"""Characters of a name copied into a span name or attribute (``clip``)."""
DESCRIPTION_LIMIT: Final = 1_024
"""Characters of an exception's message in a span status or ``exception`` event."""
STACK_LIMIT: Final = 16_384
"""Characters of an ``exception`` event's stack trace (its head and end are kept)."""

_CACHE_LIMIT: Final = 64  # entries per step definition (timeouts x child indexes)


class StaticAttributes:
    """The span name and start attributes of each step definition, built once per
    (definition, child index, timeout) and dropped with the definition.

    ``mode(step)`` says how a step's children are traced (``nested`` or ``detached``).
    """

    __slots__ = ("cache", "mode")

    def __init__(self, mode: Callable[[Step], str]) -> None:
        self.mode = mode
        # step -> {(index, timeout): (span name, attributes)}
        self.cache: weakref.WeakKeyDictionary[Step, dict[Any, tuple[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def of(self, step: Step, ctx: StepContext, index: int | None) -> tuple[str, Any]:
        """``(span name, attributes)`` of ``step`` run under ``ctx`` as child ``index``."""
        per_step = self.cache.get(step)
        if per_step is None:
            per_step = self.cache[step] = {}
        key = (index, ctx.timeout)
        entry = per_step.get(key)
        if entry is None:
            attributes: dict[str, AttributeValue] = {
                FLOW_NAME: clip(ctx.flow_name, NAME_LIMIT),
                STEP_NAME: clip(step.name, NAME_LIMIT),
                STEP_TYPE: clip(step.type, NAME_LIMIT),
            }
            timeout = ctx.timeout
            if timeout is not None and not math.isinf(timeout):
                attributes[STEP_TIMEOUT] = timeout
            if index is not None:
                attributes[CHILD_INDEX] = index
            if step.concurrent:
                attributes[TRACE_CHILDREN] = self.mode(step)
                attributes[CHILDREN_TOTAL] = len(step.children())
            if len(per_step) >= _CACHE_LIMIT:  # many timeouts or indexes: keep it bounded
                per_step.clear()
            entry = per_step[key] = (clip(f"{step.type} {step.name}", NAME_LIMIT), attributes)
        return entry
