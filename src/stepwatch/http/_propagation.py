"""Trace context across HTTP: extract on the way in, inject on the way out.

Through the OpenTelemetry API's global propagators only; never raises into a request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, MutableMapping
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

__all__ = ["detach_context", "extract_context", "inject_context"]


class _AsgiGetter:
    """OpenTelemetry getter over ASGI's ``[(name, value), ...]`` byte pairs."""

    def get(self, carrier: Iterable[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        found = [v.decode("latin-1") for k, v in carrier if k == name]
        return found or None

    def keys(self, carrier: Iterable[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER: Final = _AsgiGetter()


def extract_context(headers: Iterable[tuple[bytes, bytes]]) -> object | None:
    """Attach the caller's trace context if no span is current; return the detach token.

    When a server span is already current (the OpenTelemetry ASGI middleware runs
    outside), nothing is done: that span already continues the caller's trace.
    """
    try:
        if trace.get_current_span().get_span_context().is_valid:
            return None
        current = otel_context.get_current()
        extracted = propagate.extract(headers, context=current, getter=_GETTER)  # type: ignore[arg-type]
        if extracted is current:
            return None
        return otel_context.attach(extracted)
    except Exception:
        return None


def detach_context(token: object | None) -> None:
    """Undo :func:`extract_context`; never raises."""
    if token is not None:
        with contextlib.suppress(Exception):
            otel_context.detach(token)  # type: ignore[arg-type]


_ACCOMPANYING: Final = frozenset({"baggage", "tracestate"})
"""Fields that travel with a trace context without being one: a caller may set them alone."""


def inject_context(headers: MutableMapping[str, str]) -> None:
    """Inject the current trace context unless ``headers`` already carry one; never raises.

    A caller's own ``baggage`` or ``tracestate`` is not a trace context: the rest (the
    ``traceparent``) is still injected, and the field the caller set is kept as given.
    """
    try:
        textmap = propagate.get_global_textmap()
        if any(field in headers for field in textmap.fields if field not in _ACCOMPANYING):
            return  # e.g. the httpx instrumentation's client span, injected outside us
        injected: dict[str, str] = {}
        propagate.inject(injected)
        for name, value in injected.items():
            if name not in headers:
                headers[name] = value
    except Exception:
        return
