"""Metrics and span attributes of the HTTP deadline integrations.

Metrics are created when the first middleware, transport or client with metrics on is
built for a registry (never at import) and shared by everything on that registry.
Nothing here ever raises into a request: a failing registry, metric or span is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace

from .._log import log
from ..telemetry._registry import PerRegistry, register_all

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["HttpMetrics", "count", "http_metrics", "observe", "set_attributes"]

INBOUND_REQUESTS: Final = "stepwatch_inbound_requests_total"
INBOUND_REJECTED: Final = "stepwatch_inbound_rejected_total"
INBOUND_EXPIRED: Final = "stepwatch_inbound_expired_total"
INBOUND_BUDGET: Final = "stepwatch_inbound_budget_seconds"
OUTBOUND_REQUESTS: Final = "stepwatch_outbound_requests_total"
OUTBOUND_NOT_SENT: Final = "stepwatch_outbound_not_sent_total"
OUTBOUND_BUDGET: Final = "stepwatch_outbound_budget_seconds"
HTTP_METRIC_NAMES: Final = (
    *(INBOUND_REQUESTS, INBOUND_REJECTED, INBOUND_EXPIRED, INBOUND_BUDGET),
    *(OUTBOUND_REQUESTS, OUTBOUND_NOT_SENT, OUTBOUND_BUDGET),
)
"""The name of every metric of ``stepwatch.http`` (as passed to prometheus-client)."""

BUDGET_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
MAX_TARGETS: Final = 100
"""Distinct ``target`` label values admitted; later new ones are recorded as ``_other``."""


class HttpMetrics:
    """The seven ``stepwatch.http`` metrics on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        self.inbound_requests = Counter(
            INBOUND_REQUESTS,
            "Requests seen by the deadline middleware, by budget source.",
            ("source",),
            registry=None,
        )
        self.inbound_rejected = Counter(
            INBOUND_REJECTED,
            "Requests answered without calling the application.",
            ("reason",),
            registry=None,
        )
        self.inbound_expired = Counter(
            INBOUND_EXPIRED,
            "Requests whose inbound deadline expired while the application ran.",
            ("phase",),
            registry=None,
        )
        self.inbound_budget = Histogram(
            INBOUND_BUDGET,
            "Budget (s) each request got on arrival (after the cap).",
            registry=None,
            buckets=BUDGET_BUCKETS,
        )
        self.outbound_requests = Counter(
            OUTBOUND_REQUESTS,
            "Outbound requests made inside a deadline (sent or not).",
            ("target",),
            registry=None,
        )
        self.outbound_not_sent = Counter(
            OUTBOUND_NOT_SENT,
            "Outbound requests not sent: no time left beyond the margin.",
            ("target",),
            registry=None,
        )
        self.outbound_budget = Histogram(
            OUTBOUND_BUDGET,
            "Time left (s) when an outbound request was sent.",
            ("target",),
            registry=None,
            buckets=BUDGET_BUCKETS,
        )
        register_all(registry, [getattr(self, name) for name in _ATTRS])
        for reason in ("spent", "invalid"):  # series at 0, so ratios show 0, not "no data"
            self.inbound_rejected.labels(reason)
        for phase in ("before_response", "during_response"):
            self.inbound_expired.labels(phase)
        self._targets: set[str] = set()
        self._lock = threading.Lock()

    def target(self, name: str) -> str:
        """``name`` if admitted (admitting it while there is room), else ``_other``."""
        if name in self._targets:
            return name
        with self._lock:
            if len(self._targets) >= MAX_TARGETS:
                return "_other"
            self._targets.add(name)
            self.outbound_not_sent.labels(name)
            return name


_ATTRS = (
    "inbound_requests",
    "inbound_rejected",
    "inbound_expired",
    "inbound_budget",
    "outbound_requests",
    "outbound_not_sent",
    "outbound_budget",
)
_sets: PerRegistry[HttpMetrics] = PerRegistry()


def http_metrics(registry: CollectorRegistry | None) -> HttpMetrics | None:
    """The registry's :class:`HttpMetrics` (the default registry if ``None``), or ``None``
    when the registry refuses them (a ``metrics.unavailable`` warning is logged)."""
    try:
        from prometheus_client import REGISTRY

        reg: Any = REGISTRY if registry is None else registry
        return _sets.get(reg, HttpMetrics)
    except Exception as exc:
        log(
            logging.WARNING,
            "metrics.unavailable",
            {"component": "stepwatch.http", "error": repr(exc)},
        )
        return None


def count(metric: Any, *labels: str) -> None:
    """Increment ``metric`` (labelled with ``labels``); never raises."""
    with contextlib.suppress(Exception):
        (metric.labels(*labels) if labels else metric).inc()


def observe(metric: Any, value: float, *labels: str) -> None:
    """Observe ``value`` on ``metric`` (labelled with ``labels``); never raises."""
    with contextlib.suppress(Exception):
        (metric.labels(*labels) if labels else metric).observe(value)


def set_attributes(attributes: dict[str, Any]) -> None:
    """Set ``attributes`` on the current span if it is recording; never raises."""
    with contextlib.suppress(Exception):
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(attributes)
