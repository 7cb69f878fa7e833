"""Telemetry integrations: tracing, metrics and logs of every step.

The :class:`~stepwatch.FlowExecutor` calls them at every step's start and end, with the
step's :class:`~stepwatch.StepEnded` record, whatever executor runs the step (built-in
or user-registered), so no executor contains telemetry code. They depend on the core's
record and protocols only. Every name they emit is documented in ``docs/telemetry.md``.
"""

from __future__ import annotations

from .._public import publish as _publish
from ._metrics_config import MetricsConfig
from ._otlp import otlp_tracer_provider
from ._trace_ids import add_trace_ids
from ._tracing_config import TracingConfig

__all__ = [
    "MetricsConfig",
    "TracingConfig",
    "add_trace_ids",
    "otlp_tracer_provider",
]

_publish(globals(), __all__, __name__)
