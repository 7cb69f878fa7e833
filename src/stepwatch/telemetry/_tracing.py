"""OpenTelemetry tracing: one INTERNAL span per step execution (DESIGN.md §5 "Traces").

The decorator wraps every registered executor (the outermost wrapper), so no executor
contains tracing code. Each span is started, made current and ended in the task that runs
the step; context tokens are detached in that same task, so cancellation never produces
"Failed to detach context" and every span is ended. Only ``opentelemetry-api`` is imported
here; :func:`otlp_tracer_provider` imports the SDK and the OTLP exporter lazily.

Span names, attributes, events and status rules are documented in
``docs/telemetry.md``.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from anyio import current_time
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from .._errors import ValidationError
from .._steps import Flow, Loop, Parallel
from ._classify import (
    CANCELLATION,
    FAILURE,
    SUCCESS,
    TIMEOUT,
    arose_here,
    classify,
    error_type,
)

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from .._context import StepContext
    from .._protocols import ExecutorDecorator, StepExecutor
    from .._steps import Step

__all__ = [
    "TRACER_NAME",
    "TracingConfig",
    "make_tracing_decorator",
    "otlp_tracer_provider",
]

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
STEP_OVERRUN: Final = "stepwatch.step.overrun"
OVERRUN: Final = "overrun"

_Key = tuple[int, int | None, float | None]
_CHILD_STATUSES: Final = ("succeeded", "failed", "timed_out", "cancelled", "fallback")
_CACHE_LIMIT: Final = 65_536
_DESCRIPTION_LIMIT: Final = 1_024


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """Tracing options, passed as ``FlowExecutor(tracing=TracingConfig(...))``.

    Args:
        trace_children: how a parallel step's children are traced when the step does not
            say (``Parallel(trace_children=None)``): ``"nested"`` (child spans of the
            parallel span) or ``"detached"`` (each child starts its own trace, with a span
            link to the parallel span; for very large fan-outs).
        near_timeout_ratio: a step that ends (succeeded or failed) after using more than
            this share of its budget gets a ``stepwatch.near_timeout`` span event; ``None``
            switches the event off. Must be in (0, 1].
        record_exceptions: record each exception as a span event (once, on the span of
            the step where it arose).
        max_pending_names: at most this many names in the ``stepwatch.pending`` attribute
            of a ``stepwatch.timeout`` event (``stepwatch.pending.count`` has the total).

    Raises:
        ValidationError: a value out of range.
    """

    trace_children: Literal["nested", "detached"] = "nested"
    near_timeout_ratio: float | None = 0.8
    record_exceptions: bool = True
    max_pending_names: int = 100

    def __post_init__(self) -> None:
        if self.trace_children not in ("nested", "detached"):
            raise ValidationError(
                "TracingConfig.trace_children must be 'nested' or 'detached'; "
                f"got {self.trace_children!r}",
                field="trace_children",
                value=self.trace_children,
            )
        ratio = self.near_timeout_ratio
        if ratio is not None and (
            isinstance(ratio, bool)
            or not isinstance(ratio, int | float)
            or math.isnan(ratio)
            or not 0 < ratio <= 1
        ):
            raise ValidationError(
                f"TracingConfig.near_timeout_ratio must be a number in (0, 1] or None; "
                f"got {ratio!r}",
                field="near_timeout_ratio",
                value=ratio,
            )
        limit = self.max_pending_names
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValidationError(
                f"TracingConfig.max_pending_names must be an int >= 0; got {limit!r}",
                field="max_pending_names",
                value=limit,
            )


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("stepwatch")
    except Exception:  # pragma: no cover - running from a source tree
        return None


def _get_tracer(tracer_provider: TracerProvider | None) -> Tracer:
    if tracer_provider is None:
        return trace.get_tracer(TRACER_NAME, _version())
    return tracer_provider.get_tracer(TRACER_NAME, _version())


class _Tracing:
    """State shared by every traced executor of one FlowExecutor."""

    __slots__ = ("cache", "config", "live", "tracer")

    def __init__(self, config: TracingConfig, tracer: Tracer) -> None:
        self.config = config
        self.tracer = tracer
        # flow -> {(id(step), index, timeout): (step, span name, static attributes)}: built
        # once per step definition, dropped with the flow; the step is kept in the entry so
        # its id cannot be reused while the entry lives
        self.cache: weakref.WeakKeyDictionary[Flow, dict[_Key, tuple[Step, str, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        # id(ctx) -> span, for parallel steps whose children are detached (while running)
        self.live: dict[int, Span] = {}

    def static(self, step: Step, ctx: StepContext, parallel_child: bool) -> tuple[str, Any]:
        index = ctx.index if parallel_child else None
        flow = ctx.flow
        cache = self.cache.get(flow)
        if cache is None:
            cache = self.cache[flow] = {}
        key = (id(step), index, ctx.timeout)
        entry = cache.get(key)
        if entry is None or entry[0] is not step:
            attributes: dict[str, AttributeValue] = {
                FLOW_NAME: ctx.flow_name,
                STEP_NAME: step.name,
                STEP_TYPE: step.type,
            }
            timeout = ctx.timeout
            if timeout is not None and not math.isinf(timeout):
                attributes[STEP_TIMEOUT] = timeout
            if index is not None:
                attributes[CHILD_INDEX] = index
            if isinstance(step, Parallel):
                attributes[TRACE_CHILDREN] = self.detached(step)
                attributes[CHILDREN_TOTAL] = len(step.steps)
            if len(cache) >= _CACHE_LIMIT:  # steps made at run time by a custom executor
                cache.clear()
            entry = (step, f"{step.type} {step.name}", attributes)
            cache[key] = entry
        return entry[1], entry[2]

    def detached(self, step: Parallel) -> Literal["nested", "detached"]:
        return step.trace_children or self.config.trace_children

    def start(self, step: Step, ctx: StepContext) -> tuple[Span, Token[Context]]:
        parent = ctx.parent
        parent_step = parent.step if parent is not None else None
        parallel_child = isinstance(parent_step, Parallel)
        name, attributes = self.static(step, ctx, parallel_child)
        # dynamic attributes go into start_span too: one attribute pass instead of a locked
        # set_attribute() call each
        extra: dict[str, AttributeValue] = {}
        if parent_step is None:
            extra[RUN_ID] = ctx.run_id
        if isinstance(parent_step, Loop) and ctx.iteration is not None:
            extra[LOOP_ITERATION] = ctx.iteration
        if ctx.deadline != math.inf and not (ctx.scoped and ctx.deadline == ctx.own_deadline):
            # only when it differs from stepwatch.step.timeout (the own budget)
            extra[EFFECTIVE_TIMEOUT] = max(0.0, ctx.deadline - ctx.started)
        if extra:
            attributes = {**attributes, **extra}
        if isinstance(parent_step, Parallel) and self.detached(parent_step) == "detached":
            assert parent is not None
            parallel_span = self.live.get(id(parent))
            links = [Link(parallel_span.get_span_context())] if parallel_span else None
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
        if isinstance(step, Parallel) and self.detached(step) == "detached":
            self.live[id(ctx)] = span
        return span, token

    def finish(
        self,
        span: Span,
        token: Token[Context],
        step: Step,
        ctx: StepContext,
        exc: BaseException | None,
    ) -> None:
        """Detach the context and end the span; never raises."""
        with contextlib.suppress(Exception):
            self.live.pop(id(ctx), None)
            otel_context.detach(token)  # logs (never raises) if the token is foreign
        try:
            if span.is_recording():
                self.describe(span, step, ctx, exc)
        except Exception:
            pass
        with contextlib.suppress(Exception):
            span.end()

    def describe(self, span: Span, step: Step, ctx: StepContext, exc: BaseException | None) -> None:
        outcome, cause = classify(ctx, exc)
        end: dict[str, AttributeValue] = {STEP_OUTCOME: outcome, STEP_ATTEMPTS: ctx.attempt}
        if cause is not None:
            end[CANCEL_CAUSE] = cause.value
        span.set_attributes(end)
        if ctx.progress is not None and isinstance(step, Parallel):
            _count_children(span, ctx.progress.outcomes)
        overrun = ctx.overrun
        if overrun is not None:
            span.add_event(EVENT_OVERRUN, {STEP_OVERRUN: overrun, **_deadline_attrs(ctx)})
        if outcome == SUCCESS:
            self.near_timeout(span, ctx)
            return
        if outcome == CANCELLATION:
            if overrun is not None:  # cut off, but only after running past the deadline:
                span.set_attribute(ERROR_TYPE, OVERRUN)  # the culprit, in red
                span.set_status(
                    Status(
                        StatusCode.ERROR,
                        f"ran {overrun:.3f} s past its deadline instead of being stopped "
                        "(held the event loop or ignored the cancellation)",
                    )
                )
            return  # else not an error of this step (see the docs): status stays UNSET
        error = exc if exc is not None else ctx.error  # fallback / partial: ctx.error
        span.set_attribute(ERROR_TYPE, error_type(outcome, error) or outcome)
        description = f"{type(error).__name__}: {error}" if error is not None else outcome
        span.set_status(Status(StatusCode.ERROR, description[:_DESCRIPTION_LIMIT]))
        if outcome == TIMEOUT:
            self.timeout_event(span, ctx, error)
        elif outcome == FAILURE:
            self.near_timeout(span, ctx)
        if error is not None and self.config.record_exceptions and arose_here(step, ctx, error):
            span.record_exception(error)

    def near_timeout(self, span: Span, ctx: StepContext) -> None:
        ratio = self.config.near_timeout_ratio
        timeout = ctx.timeout
        if ratio is None or timeout is None or math.isinf(timeout):
            return
        elapsed = current_time() - ctx.started
        share = elapsed / timeout
        if share > ratio:
            span.add_event(
                EVENT_NEAR_TIMEOUT,
                {STEP_BUDGET_RATIO: share, STEP_ELAPSED: elapsed, STEP_TIMEOUT: timeout},
            )

    def timeout_event(self, span: Span, ctx: StepContext, error: BaseException | None) -> None:
        pending: Sequence[str] | None = getattr(error, "pending", None)
        if pending is None and ctx.progress is not None:
            pending = ctx.progress.pending()
        attributes: dict[str, AttributeValue] = {STEP_ELAPSED: current_time() - ctx.started}
        if ctx.timeout is not None and not math.isinf(ctx.timeout):
            attributes[STEP_TIMEOUT] = ctx.timeout
        if pending is not None:
            attributes[PENDING] = list(pending[: self.config.max_pending_names])
            attributes[PENDING_COUNT] = len(pending)
        span.add_event(EVENT_TIMEOUT, attributes)


def _deadline_attrs(ctx: StepContext) -> dict[str, AttributeValue]:
    timeout = ctx.timeout
    if timeout is None or math.isinf(timeout):
        return {}
    return {STEP_TIMEOUT: timeout}


def _count_children(span: Span, outcomes: Sequence[Any]) -> None:
    counts = dict.fromkeys(_CHILD_STATUSES, 0)
    for outcome in outcomes:
        status = "cancelled" if outcome is None else outcome.status.value
        counts[status] = counts.get(status, 0) + 1
    span.set_attributes({CHILDREN_PREFIX + status: n for status, n in counts.items()})


class _TracedExecutor:
    """Wraps one executor: a span around every ``execute`` (see the module doc)."""

    __slots__ = ("inner", "tracing")

    def __init__(self, inner: StepExecutor, tracing: _Tracing) -> None:
        self.inner = inner
        self.tracing = tracing

    def __repr__(self) -> str:
        return f"traced({self.inner!r})"

    def can_execute(self, step: Step) -> bool:
        return self.inner.can_execute(step)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        tracing = self.tracing
        try:
            span, token = tracing.start(step, ctx)
        except Exception:  # telemetry never breaks a flow: run untraced
            return await self.inner.execute(step, ctx)
        try:
            value = await self.inner.execute(step, ctx)
        except BaseException as exc:
            tracing.finish(span, token, step, ctx, exc)
            raise
        tracing.finish(span, token, step, ctx, None)
        return value


def make_tracing_decorator(
    config: TracingConfig, *, tracer_provider: TracerProvider | None
) -> ExecutorDecorator:
    """Build the decorator that traces every step an executor runs.

    Args:
        config: the :class:`TracingConfig`.
        tracer_provider: an OpenTelemetry ``TracerProvider``; ``None`` uses the global
            provider (resolved lazily, so one set after the executor was built is used).

    Returns:
        An :class:`~stepwatch.ExecutorDecorator`.
    """
    tracing = _Tracing(config, _get_tracer(tracer_provider))

    def decorate(executor: StepExecutor) -> StepExecutor:
        return _TracedExecutor(executor, tracing)

    return decorate


def otlp_tracer_provider(
    service_name: str,
    *,
    endpoint: str = "http://localhost:4318/v1/traces",
    resource_attributes: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> TracerProvider:
    """A ready SDK ``TracerProvider`` that batches spans to an OTLP/HTTP endpoint.

    For applications and examples (e.g. a local Jaeger). The library itself never uses
    it; pass the result as ``FlowExecutor(tracer_provider=...)`` or set it globally.
    Call ``provider.shutdown()`` at exit to flush the last spans.

    Args:
        service_name: the resource's ``service.name`` (Jaeger's service).
        endpoint: the OTLP/HTTP traces URL, including ``/v1/traces``.
        resource_attributes: more resource attributes.
        timeout: seconds per export request.

    Raises:
        ImportError: the SDK or the exporter is not installed
            (``pip install 'stepwatch[otlp]'``).
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ImportError(
            "otlp_tracer_provider needs the OpenTelemetry SDK and the OTLP/HTTP exporter: "
            "pip install 'stepwatch[otlp]'"
        ) from exc
    attributes = {"service.name": service_name, **(resource_attributes or {})}
    provider = SDKTracerProvider(resource=Resource.create(attributes))
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
