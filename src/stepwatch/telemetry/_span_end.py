"""What a step's span says when the step ends: outcome attributes, status and events.

Read from the step's :class:`~stepwatch.StepEnded` record only; the span's lifecycle
(start, context, end) is in ``_tracing``. Every attribute, event and status rule is
documented in ``docs/telemetry.md``.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from opentelemetry.trace import Status, StatusCode

from .._outcome import Status as StepStatus
from .._record import type_name
from .._text import clip, exportable, message_of
from ._span_attributes import (
    CANCEL_CAUSE,
    CHILDREN_PREFIX,
    DESCRIPTION_LIMIT,
    ERROR_TYPE,
    EVENT_EXCEPTION,
    EVENT_NEAR_TIMEOUT,
    EVENT_OVERRUN,
    EVENT_TIMEOUT,
    PENDING,
    PENDING_COUNT,
    STACK_LIMIT,
    STEP_ATTEMPTS,
    STEP_BUDGET_RATIO,
    STEP_ELAPSED,
    STEP_OUTCOME,
    STEP_OVERRUN,
    STEP_TIMEOUT,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from .._record import StepEnded

__all__ = ["SpanEnd", "exception_attributes"]


def exception_attributes(error: BaseException) -> dict[str, AttributeValue]:
    """The OpenTelemetry ``exception`` event's attributes, with the message and the stack
    trace bounded (``Span.record_exception`` copies both in full, however large)."""
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if len(stack) > STACK_LIMIT:  # keep the head and the end, where the raise is
        half = STACK_LIMIT // 2
        stack = f"{stack[:half]}\n… ({len(stack) - STACK_LIMIT} characters) …\n{stack[-half:]}"
    return {
        "exception.type": type_name(type(error)),
        "exception.message": clip(message_of(error), DESCRIPTION_LIMIT),
        "exception.stacktrace": exportable(stack),
        "exception.escaped": False,
    }


class SpanEnd:
    """Describes the span of a step that ended (one per :class:`~._tracing.Tracing`).

    ``near``: the share of its budget above which a step gets the near-timeout event;
    ``own_near``: it comes from the deprecated ``TracingConfig.near_timeout_ratio``, so
    the span decides instead of the record (``StepEnded.near_timeout``).
    """

    __slots__ = ("max_pending", "near", "own_near", "record_exceptions")

    def __init__(
        self, near: float | None, own_near: bool, max_pending: int, record_exceptions: bool
    ) -> None:
        self.near = near
        self.own_near = own_near
        self.max_pending = max_pending
        self.record_exceptions = record_exceptions

    def describe(self, span: Span, record: StepEnded) -> None:
        """Set the outcome attributes, the status and the events of a recording span."""
        outcome = record.outcome
        end: dict[str, AttributeValue] = {
            STEP_OUTCOME: record.result,
            STEP_ATTEMPTS: outcome.attempts,
        }
        if outcome.cause is not None:
            end[CANCEL_CAUSE] = outcome.cause.value
        if record.children is not None:
            for status, count in record.children.items():
                end[CHILDREN_PREFIX + status] = count
        if record.error_type is not None:
            end[ERROR_TYPE] = record.error_type
        span.set_attributes(end)
        if outcome.overrun is not None:
            event: dict[str, AttributeValue] = {STEP_OVERRUN: outcome.overrun}
            if outcome.timeout is not None:
                event[STEP_TIMEOUT] = outcome.timeout
            span.add_event(EVENT_OVERRUN, event)
        status = outcome.status
        if self.own_near:
            if status is StepStatus.SUCCEEDED or status is StepStatus.FAILED:
                self.near_timeout(span, record)
        elif record.near_timeout:
            self.near_timeout(span, record)
        if record.error_type is None:
            return  # success, or a plain cancellation: not an error of this step
        error = record.exception
        if status is StepStatus.CANCELLED:  # cut off after running past its deadline
            description = (
                f"ran {outcome.overrun or 0.0:.3f} s past its deadline instead of being "
                "stopped (held the event loop or ignored the cancellation)"
            )
        elif error is None:
            description = "timeout"
        elif record.arose_here:  # only the span where it arose carries the message
            description = f"{type(error).__name__}: {clip(message_of(error), DESCRIPTION_LIMIT)}"
        else:  # an ancestor: which child failed, not the child's message again
            child = getattr(error, "step_name", None)
            description = f"{type(error).__name__} from step {clip(str(child), 200)!r}"
        span.set_status(Status(StatusCode.ERROR, description))
        if record.error_type == "timeout":
            self.timeout_event(span, record)
        if error is not None and record.arose_here and self.record_exceptions:
            span.add_event(EVENT_EXCEPTION, exception_attributes(error))

    def near_timeout(self, span: Span, record: StepEnded) -> None:
        """The near-timeout event, if the step used more than ``near`` of its budget."""
        ratio = record.budget_ratio
        near = self.near
        if near is None or ratio is None or ratio <= near:
            return
        timeout = record.outcome.timeout
        assert timeout is not None
        span.add_event(
            EVENT_NEAR_TIMEOUT,
            {STEP_BUDGET_RATIO: ratio, STEP_ELAPSED: ratio * timeout, STEP_TIMEOUT: timeout},
        )

    def timeout_event(self, span: Span, record: StepEnded) -> None:
        """The timeout event of the step that owned an expired deadline."""
        outcome = record.outcome
        attributes: dict[str, AttributeValue] = {STEP_ELAPSED: outcome.elapsed}
        if outcome.timeout is not None:
            attributes[STEP_TIMEOUT] = outcome.timeout
        if record.pending or record.step.children():
            attributes[PENDING] = list(record.pending[: self.max_pending])
            attributes[PENDING_COUNT] = len(record.pending)
        span.add_event(EVENT_TIMEOUT, attributes)
