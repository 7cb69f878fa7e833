"""Telemetry integrations: tracing, metrics and logs, each an executor decorator.

The :class:`~stepwatch.FlowExecutor` wraps every registered executor (built-in and
user-registered alike) in these decorators, so no executor contains telemetry code.
Order, inside out: deadline guard → user decorators → logging → metrics → tracing, so
that log events and metric exemplars see the step's span as the current one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._logging import add_trace_ids, make_logging_decorator
from ._metrics import MetricsConfig, make_metrics_decorator
from ._tracing import TracingConfig, make_tracing_decorator, otlp_tracer_provider

if TYPE_CHECKING:
    from .._protocols import ExecutorDecorator
    from .._workers import WorkerTracker

__all__ = [
    "MetricsConfig",
    "TracingConfig",
    "add_trace_ids",
    "build_decorators",
    "otlp_tracer_provider",
]


def build_decorators(
    *,
    workers: WorkerTracker,
    tracing: bool | TracingConfig,
    tracer_provider: Any,
    metrics: bool | MetricsConfig,
    registry: Any,
    logging: bool,
) -> list[ExecutorDecorator]:
    """The telemetry decorators to apply, innermost first (internal)."""
    decorators: list[ExecutorDecorator] = []
    if logging:
        decorators.append(make_logging_decorator())
    if metrics is not False:
        config = metrics if isinstance(metrics, MetricsConfig) else MetricsConfig()
        decorators.append(make_metrics_decorator(config, registry=registry, workers=workers))
    if tracing is not False:
        config_t = tracing if isinstance(tracing, TracingConfig) else TracingConfig()
        decorators.append(make_tracing_decorator(config_t, tracer_provider=tracer_provider))
    return decorators
