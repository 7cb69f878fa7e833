"""otlp_tracer_provider(): a ready SDK provider exporting over OTLP/HTTP (for applications)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["otlp_tracer_provider"]


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
