"""Plain helpers shared by test modules of several packages (fixtures live in conftest.py).

The OpenTelemetry SDK is imported by the helpers that need it, not by this module.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import CollectorRegistry


def memory_tracer(
    resource: Resource | None = None,
) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A tracer provider exporting every ended span at once to an in-memory exporter:
    ``exporter.get_finished_spans()`` has them. ``resource`` as ``TracerProvider`` takes it."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value in ``registry`` (0 when the series does not exist)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def require_tool(path: str | None, missing: str, *, what: str = "this test") -> str:
    """``path`` (where an external tool was found), or stop the test: skip it saying
    ``missing``, except under ``CI=true``, where CI installs the tool and ``what`` is
    mandatory: fail it."""
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing}; CI=true makes {what} mandatory", pytrace=False)
    pytest.skip(missing)
