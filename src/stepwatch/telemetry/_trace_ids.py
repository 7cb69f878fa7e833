"""add_trace_ids: a structlog processor adding the current span's ids (opt-in)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace

__all__ = ["add_trace_ids"]


def add_trace_ids(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``trace_id`` and ``span_id`` of the current span.

    Opt in by adding it to your processors (before the renderer)::

        structlog.configure(processors=[stepwatch.telemetry.add_trace_ids, ...])

    The ids are lowercase hex (``format_trace_id`` / ``format_span_id``), as Jaeger and
    Tempo show them. Nothing is added when no valid span is current; keys already in the
    event are kept.
    """
    try:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            event_dict.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
            event_dict.setdefault("span_id", trace.format_span_id(span_context.span_id))
    except Exception:
        pass
    return event_dict
