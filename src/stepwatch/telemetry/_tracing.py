"""OpenTelemetry tracing: one INTERNAL span per step execution.

Started when a step starts and ended from its :class:`~stepwatch.StepEnded` record, in the
task that runs the step; the context token is detached in that same task, so cancellation
never produces "Failed to detach context" and every span is ended. Only
``opentelemetry-api`` is imported here. Span names, attributes, events and status rules
are documented in ``docs/telemetry.md``.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, ProxyTracerProvider, SpanKind, Status, StatusCode

from .._outcome import Status as StepStatus
from .._record import type_name
from .._text import clip, exportable
from ._tracing_config import UNSET, TracingConfig

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from .._context import StepContext
    from .._record import StepEnded
    from .._steps import Step

__all__ = ["TRACER_NAME", "Tracing"]

TRACER_NAME: Final = "stepwatch"
"""The one instrumentation-scope name every stepwatch span is created under."""

# attribute keys (documented in docs/telemetry.md)
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

_NOOP_RECHECK: Final = 1.0  # s; a provider set later is used from the next look-up
_CACHE_LIMIT: Final = 64
_DESCRIPTION_LIMIT: Final = 1_024
_STACK_LIMIT: Final = 16_384
_NAME_LIMIT: Final = 256


def _exception_attributes(error: BaseException) -> dict[str, AttributeValue]:
    """The OpenTelemetry ``exception`` event's attributes, with the message and the stack
    trace bounded (``Span.record_exception`` copies both in full, however large)."""
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if len(stack) > _STACK_LIMIT:  # keep the head and the end, where the raise is
        half = _STACK_LIMIT // 2
        stack = f"{stack[:half]}\n… ({len(stack) - _STACK_LIMIT} characters) …\n{stack[-half:]}"
    return {
        "exception.type": type_name(type(error)),
        "exception.message": clip(str(error), _DESCRIPTION_LIMIT),
        "exception.stacktrace": exportable(stack),
        "exception.escaped": False,
    }


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("stepwatch")
    except Exception:  # pragma: no cover - running from a source tree
        return None


class Tracing:
    """Starts and ends the span of every step of one FlowExecutor."""

    __slots__ = (
        "_noop_until",
        "config",
        "live",
        "near",
        "own_near",
        "provider",
        "static_cache",
        "tracer",
    )

    def __init__(
        self, config: TracingConfig, provider: TracerProvider | None, near: float | None
    ) -> None:
        self.config = config
        self.provider = provider
        tracer_provider = provider if provider is not None else trace.get_tracer_provider()
        # a ProxyTracer when the global provider is not set yet: it follows once it is
        self.tracer: Tracer = tracer_provider.get_tracer(TRACER_NAME, _version())
        span_near = config.near_timeout_ratio
        # the deprecated TracingConfig.near_timeout_ratio overrides the executor's
        # near_timeout for span events only; else the record already says (near_timeout)
        self.own_near = span_near is not UNSET
        self.near = span_near if self.own_near else near
        # step -> {(index, timeout): (span name, static attributes)}: built once per step
        # definition, dropped with it
        self.static_cache: weakref.WeakKeyDictionary[Step, dict[Any, tuple[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        # id(ctx) -> span, for steps whose children are detached (while they run)
        self.live: dict[int, Span] = {}
        # until when (time.monotonic()) the global provider is known to be the API's
        # proxy without an SDK behind it: no span then (they would be non-recording)
        self._noop_until = -math.inf

    def noop(self) -> bool:
        """Whether spans would be non-recording: no provider given and no SDK provider set
        globally (looked up at most once a second: it is an environment look-up)."""
        if self.provider is not None:
            return False
        now = time.monotonic()
        if now < self._noop_until:
            return True
        if isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
            self._noop_until = now + _NOOP_RECHECK
            return True
        self._noop_until = -math.inf
        return False

    def mode(self, step: Step) -> str:
        """``nested`` or ``detached``: how ``step``'s children are traced."""
        return step.trace_mode() or self.config.trace_children

    def static(self, step: Step, ctx: StepContext, index: int | None) -> tuple[str, Any]:
        per_step = self.static_cache.get(step)
        if per_step is None:
            per_step = self.static_cache[step] = {}
        key = (index, ctx.timeout)
        entry = per_step.get(key)
        if entry is None:
            attributes: dict[str, AttributeValue] = {
                FLOW_NAME: clip(ctx.flow_name, _NAME_LIMIT),
                STEP_NAME: clip(step.name, _NAME_LIMIT),
                STEP_TYPE: clip(step.type, _NAME_LIMIT),
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
            entry = per_step[key] = (clip(f"{step.type} {step.name}", _NAME_LIMIT), attributes)
        return entry

    def start(self, ctx: StepContext) -> Any:
        """Start the step's span and make it current; ``None`` when tracing is a no-op."""
        if self.noop():
            return None  # no SDK: spans would be non-recording; the context stays as is
        step = ctx.step
        assert step is not None
        parent = ctx.parent
        parent_step = parent.step if parent is not None else None
        concurrent_child = parent_step is not None and parent_step.concurrent
        name, attributes = self.static(step, ctx, ctx.index if concurrent_child else None)
        extra: dict[str, AttributeValue] = {}
        if parent_step is None:
            extra[RUN_ID] = ctx.run_id
        elif parent_step.repeats and ctx.iteration is not None:
            extra[LOOP_ITERATION] = ctx.iteration
        deadline = ctx.deadline
        timeout = ctx.timeout
        if deadline != math.inf and (timeout is None or deadline != ctx.started + timeout):
            extra[EFFECTIVE_TIMEOUT] = max(0.0, deadline - ctx.started)
        if extra:
            attributes = {**attributes, **extra}
        if concurrent_child and self.mode(parent_step) == "detached":  # type: ignore[arg-type]
            assert parent is not None
            parent_span = self.live.get(id(parent))
            links = [Link(parent_span.get_span_context())] if parent_span else None
            span = self.tracer.start_span(
                name,
                context=otel_context.Context(),  # a new trace (root span)
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                links=links,
            )
        else:
            span = self.tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
        try:
            token = otel_context.attach(trace.set_span_in_context(span))
        except BaseException:
            with contextlib.suppress(Exception):
                span.end()  # never leave a started span open
            raise
        if step.concurrent and self.mode(step) == "detached":
            self.live[id(ctx)] = span
        return span, token

    def end(self, record: StepEnded, state: Any) -> None:
        """Describe the span from ``record``, end it and detach its context (never raises)."""
        if state is None:
            return
        span, token = state
        self.live.pop(id(record.context), None)
        # try/except, not contextlib.suppress: suppress() would build an object per step;
        # three separate guards, so that a failing describe or end() still detaches
        try:
            if span.is_recording():
                self.describe(span, record)
        except Exception:
            pass
        try:  # noqa: SIM105 - hot path (see above)
            span.end()
        except Exception:
            pass
        try:  # noqa: SIM105 - hot path (see above)
            otel_context.detach(token)  # logs (never raises) if the token is foreign
        except Exception:
            pass

    def describe(self, span: Span, record: StepEnded) -> None:
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
            description = f"{type(error).__name__}: {clip(str(error), _DESCRIPTION_LIMIT)}"
        else:  # an ancestor: which child failed, not the child's message again
            child = getattr(error, "step_name", None)
            description = f"{type(error).__name__} from step {clip(str(child), 200)!r}"
        span.set_status(Status(StatusCode.ERROR, description))
        if record.error_type == "timeout":
            self.timeout_event(span, record)
        if error is not None and record.arose_here and self.config.record_exceptions:
            span.add_event(EVENT_EXCEPTION, _exception_attributes(error))

    def near_timeout(self, span: Span, record: StepEnded) -> None:
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
        outcome = record.outcome
        attributes: dict[str, AttributeValue] = {STEP_ELAPSED: outcome.elapsed}
        if outcome.timeout is not None:
            attributes[STEP_TIMEOUT] = outcome.timeout
        if record.pending or record.step.children():
            attributes[PENDING] = list(record.pending[: self.config.max_pending_names])
            attributes[PENDING_COUNT] = len(record.pending)
        span.add_event(EVENT_TIMEOUT, attributes)
