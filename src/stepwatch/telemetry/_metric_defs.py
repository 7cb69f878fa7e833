"""The nine stepwatch metric objects, made unregistered (``_metric_set`` registers them).

Names, types, labels and help texts are the contract documented in ``docs/telemetry.md``
(``METRIC_NAMES`` lists them in this order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from ._metrics_config import (
    ABANDONED,
    BUDGET_RATIO,
    CHILDREN_CANCELLED,
    DURATION,
    FLOW_DURATION,
    FLOW_TIMEOUTS,
    IN_PROGRESS,
    OVERRUN,
    TIMEOUTS,
)

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from ._metrics_config import MetricsConfig

__all__ = ["define_metrics"]


def define_metrics(config: MetricsConfig, histogram: type[Histogram]) -> tuple[Any, ...]:
    """The metrics, in the order of ``METRIC_NAMES``; ``histogram`` is the histogram class
    (``_lean.histogram_class``)."""
    step_labels = ("flow", "step", "step_type")
    duration = histogram(
        DURATION,
        "Duration of each step execution (all attempts), by outcome.",
        (*step_labels, "outcome"),
        registry=None,
        buckets=config.duration_buckets,
    )
    timeouts = Counter(
        TIMEOUTS, "Step executions whose own deadline expired.", step_labels, registry=None
    )
    budget_ratio = histogram(
        BUDGET_RATIO,
        "Share of its timeout a step execution used (elapsed / timeout).",
        step_labels,
        registry=None,
        buckets=config.budget_ratio_buckets,
    )
    in_progress = Gauge(
        IN_PROGRESS,
        "Step executions running now.",
        ("flow", "step_type"),
        registry=None,
        multiprocess_mode="livesum",
    )
    children_cancelled = Counter(
        CHILDREN_CANCELLED,
        "Children of a parallel step cancelled or never started, by cause.",
        ("flow", "step", "cause"),
        registry=None,
    )
    abandoned = Gauge(
        ABANDONED,
        "Worker threads abandoned at a deadline and still running.",
        ("flow", "step_type"),
        registry=None,
        multiprocess_mode="livesum",
    )
    flow_duration = histogram(
        FLOW_DURATION,
        "Duration of each flow run (the whole run), by outcome.",
        ("flow", "outcome"),
        registry=None,
        buckets=config.duration_buckets,
    )
    flow_timeouts = Counter(
        FLOW_TIMEOUTS, "Flow runs whose whole-flow deadline expired.", ("flow",), registry=None
    )
    overrun = Counter(
        OVERRUN,
        "Seconds steps ran past the deadline governing them instead of being stopped "
        "(they held the event loop or ignored the cancellation).",
        step_labels,
        registry=None,
    )
    return (
        duration,
        timeouts,
        budget_ratio,
        in_progress,
        children_cancelled,
        abandoned,
        flow_duration,
        flow_timeouts,
        overrun,
    )
