"""The telemetry of one FlowExecutor: tracing, metrics and logs, observing every step.

The executor calls :meth:`Telemetry.step_started` when a step starts and
:meth:`Telemetry.step_ended` with the step's :class:`~stepwatch.StepEnded` when it ends,
in the step's task. Order: the span is started first and ended last, so the metrics'
exemplars and the log events see the step's span as the current one. The parts stand
alone: a span that cannot be started (a span processor whose ``on_start`` raises) costs
the step its span, never its metrics or log events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .._errors import ValidationError
from ._logging import Logging
from ._metrics import Metrics, make_metrics
from ._metrics_config import MetricsConfig
from ._tracing import Tracing
from ._tracing_config import TracingConfig

if TYPE_CHECKING:
    from .._context import StepContext
    from .._executor import TelemetryOptions
    from .._record import StepEnded
    from .._workers import WorkerTracker

__all__ = ["Telemetry", "make_telemetry"]

_NO_TOKEN: Final = (None, None, False)
"""What :meth:`Telemetry.step_ended` assumes when the executor has no token (``None``):
no span, no metric series, no debug events; the step's warnings are still logged."""


class Telemetry:
    """Tracing, metrics and logging parts (each ``None`` when switched off)."""

    __slots__ = ("logging", "metrics", "tracing")

    def __init__(
        self, tracing: Tracing | None, metrics: Metrics | None, logging: Logging | None
    ) -> None:
        self.tracing = tracing
        self.metrics = metrics
        self.logging = logging

    def step_started(self, ctx: StepContext, /) -> Any:
        """Start the step's span, metric series and log events; return the token that
        :meth:`step_ended` takes. Metrics and logging never raise (each guards its own
        calls); tracing runs the application's span processors, so it is guarded here."""
        tracing, metrics, logging = self.tracing, self.metrics, self.logging
        span = None
        if tracing is not None:
            try:  # try/except, not contextlib.suppress: no object built per step
                span = tracing.start(ctx)
            except Exception:  # e.g. on_start raised: no span, the rest goes on
                span = None
        series = metrics.start(ctx) if metrics is not None else None
        debug = logging.start(ctx) if logging is not None else False
        return span, series, debug

    def step_ended(self, record: StepEnded, token: Any, /) -> None:
        """Record the step's end in each part; ``token`` is what :meth:`step_started`
        returned, or ``None`` (the executor's stand-in when it raised)."""
        span, series, debug = _NO_TOKEN if token is None else token
        try:
            result = record.result
        except Exception:  # pragma: no cover - a bug here must not break a flow
            return
        if self.metrics is not None:  # exemplars: none while stepwatch's tracing is a no-op
            self.metrics.end(record, series, result, span is not None or self.tracing is None)
        if self.logging is not None:
            try:  # noqa: SIM105 - hot path: suppress() would build an object per step
                self.logging.end(record, debug, result)
            except Exception:  # a broken logger never breaks a flow
                pass
        tracing = self.tracing
        if span is not None and tracing is not None:  # None: off or a no-op, nothing to end
            tracing.end(record, span)


def _check(name: str, value: object, config: type | None) -> None:
    if isinstance(value, bool) or (config is not None and isinstance(value, config)):
        return
    also = f" or a {config.__name__}" if config is not None else ""
    raise ValidationError(
        f"FlowExecutor.{name} must be True, False{also}; got {value!r}",
        field=f"FlowExecutor.{name}",
        value=value,
    )


def make_telemetry(options: TelemetryOptions, workers: WorkerTracker) -> Telemetry | None:
    """The telemetry for a FlowExecutor's options (``None`` when all of it is off).

    Raises:
        ValidationError: an option of the wrong type (``tracing="off"`` would mean on).
    """
    _check("tracing", options.tracing, TracingConfig)
    _check("metrics", options.metrics, MetricsConfig)
    _check("logging", options.logging, None)
    tracing = None
    if options.tracing is not False:
        config = options.tracing if isinstance(options.tracing, TracingConfig) else TracingConfig()
        tracing = Tracing(config, options.tracer_provider, options.near_timeout)
    metrics = None
    if options.metrics is not False:
        metrics_config = (
            options.metrics if isinstance(options.metrics, MetricsConfig) else MetricsConfig()
        )
        metrics = make_metrics(
            metrics_config,
            registry=options.registry,
            workers=workers,
            step_types=options.step_types,
            near_timeout=options.near_timeout,
        )
    logging = Logging() if options.logging else None
    if tracing is None and metrics is None and logging is None:
        return None
    return Telemetry(tracing, metrics, logging)
