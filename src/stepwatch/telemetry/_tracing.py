"""OpenTelemetry tracing: one INTERNAL span per step execution.

Started when a step starts and ended from its :class:`~stepwatch.StepEnded` record, in the
task that runs the step; the context token is detached in that same task, so cancellation
never produces "Failed to detach context" and every span is ended. What the span says at
the end is ``_span_end``'s; the names it uses are in ``_span_attributes``. Only
``opentelemetry-api`` is imported here. Span names, attributes, events and status rules
are documented in ``docs/telemetry.md``.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, ProxyTracerProvider, SpanKind

from ._span_attributes import EFFECTIVE_TIMEOUT, LOOP_ITERATION, RUN_ID, StaticAttributes
from ._span_end import SpanEnd
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

_NOOP_RECHECK: Final = 1.0  # s; a provider set later is used from the next look-up


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
        "ending",
        "live",
        "provider",
        "static",
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
        own_near = span_near is not UNSET
        self.ending = SpanEnd(
            span_near if own_near else near,
            own_near,
            config.max_pending_names,
            config.record_exceptions,
        )
        self.static = StaticAttributes(self.mode)
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

    def start(self, ctx: StepContext) -> Any:
        """Start the step's span and make it current; ``None`` when tracing is a no-op."""
        if self.noop():
            return None  # no SDK: spans would be non-recording; the context stays as is
        step = ctx.step
        assert step is not None
        parent = ctx.parent
        parent_step = parent.step if parent is not None else None
        concurrent_child = parent_step is not None and parent_step.concurrent
        name, attributes = self.static.of(step, ctx, ctx.index if concurrent_child else None)
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
                self.ending.describe(span, record)
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
