"""One set of stepwatch metrics per prometheus-client registry, and its cached series.

Imported lazily (by :func:`~stepwatch.telemetry._metrics.make_metrics`), so
importing stepwatch neither imports prometheus-client nor registers anything. Any number
of executors share the set of their registry: the metrics are registered once.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY

from .._log import log
from ._labels import OTHER, LabelGuard, shorten
from ._lean import histogram_class
from ._metric_defs import define_metrics
from ._metric_series import FlowSeries, LiveCount, StepSeries
from ._registry import PerRegistry, multiprocess_mode, register_all

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._metrics_config import MetricsConfig

__all__ = ["MetricSet", "metric_set_for"]


_CACHE_LIMIT = 10_000  # raw (flow, step, type) keys cached; beyond it: guarded look-up


class MetricSet:
    """The stepwatch metrics registered on one registry, with the label guards."""

    def __init__(
        self, registry: CollectorRegistry, config: MetricsConfig, exempt: frozenset[str]
    ) -> None:
        self.config = config
        self.multiprocess = multiprocess_mode()
        (
            self.duration,
            self.timeouts,
            self.budget_ratio,
            self.in_progress,
            self.children_cancelled,
            self.abandoned,
            self.flow_duration,
            self.flow_timeouts,
            self.overrun,
        ) = define_metrics(config, histogram_class(self.multiprocess))
        register_all(registry, self.all())
        limit, length = config.max_label_values, config.max_label_length
        self.guards = (
            LabelGuard("flow", limit, max_length=length),
            LabelGuard("step", limit, max_length=length),
            LabelGuard("step_type", limit, exempt=exempt, max_length=length),
        )
        self.max_series = config.max_series
        self.series_overflowed = 0  # look-ups recorded under the overflow series
        self._warned_series = False
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str], StepSeries] = {}
        self._by_labels: dict[tuple[str, str, str], StepSeries] = {}
        self._abandoned: dict[tuple[str, str], Any] = {}
        self._live: dict[tuple[str, str], LiveCount] = {}
        self._flows: dict[str, FlowSeries] = {}
        self._flows_by_label: dict[str, FlowSeries] = {}

    def all(self) -> tuple[Any, ...]:
        """The metric objects (the order of ``METRIC_NAMES``)."""
        m = (self.duration, self.timeouts, self.budget_ratio, self.in_progress)
        flows = (self.flow_duration, self.flow_timeouts)
        return (*m, self.children_cancelled, self.abandoned, *flows, self.overrun)

    def series(self, flow: str, step: str, step_type: str) -> StepSeries:
        """The cached :class:`StepSeries` of a step (label values guarded on first use)."""
        key = (flow, step, step_type)
        found = self._cache.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                return found
            g_flow, g_step, g_type = self.guards
            labels = (g_flow(flow), g_step(step), g_type(step_type))
            found = self._by_labels.get(labels)
            if found is None:
                if len(self._by_labels) >= self.max_series:  # bound the series, not only
                    labels = (OTHER, OTHER, labels[2])  # the values of each label
                    self._series_overflow("step", flow, step)
                    found = self._by_labels.get(labels)
                if found is None:
                    found = StepSeries(self, *labels)
                    self._by_labels[labels] = found
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[key] = found
            return found

    def flow_series(self, flow: str) -> FlowSeries:
        """The cached :class:`FlowSeries` of a flow (its label value guarded on first use)."""
        found = self._flows.get(flow)
        if found is not None:
            return found
        with self._lock:
            found = self._flows.get(flow)
            if found is not None:
                return found
            label = self.guards[0](flow)
            found = self._flows_by_label.get(label)
            if found is None:
                if len(self._flows_by_label) >= self.max_series:
                    label = OTHER
                    self._series_overflow("flow", flow, "")
                    found = self._flows_by_label.get(label)
                if found is None:
                    found = FlowSeries(self, label)
                    self._flows_by_label[label] = found
            if len(self._flows) < _CACHE_LIMIT:
                self._flows[flow] = found
            return found

    def _series_overflow(self, kind: str, flow: str, step: str) -> None:
        """A new series beyond ``max_series``: counted, and logged the first time."""
        self.series_overflowed += 1
        if not self._warned_series:
            self._warned_series = True
            log(
                logging.WARNING,
                "metrics.series_overflow",
                {
                    "kind": kind,
                    "max_series": self.max_series,
                    "flow": shorten(flow, 128),
                    "step": shorten(step, 128),
                    "replacement": OTHER,
                },
            )

    def live_count(self, labels: tuple[str, str], child: Any) -> dict[int, int] | None:
        """The per-thread counts behind the in-progress gauge child of ``labels`` (made on
        first use, under the lock), or None in multiprocess mode, where the gauge's own
        value (shared through files) must move."""
        if self.multiprocess:
            return None
        live = self._live.get(labels)
        if live is None:
            live = LiveCount()
            child.set_function(live)
            self._live[labels] = live
        return live.by_thread

    def abandoned_child(self, flow: str, step_type: str) -> Any:
        """The abandoned-workers gauge child of (flow, step_type), label values guarded."""
        key = (flow, step_type)
        child = self._abandoned.get(key)
        if child is None:
            with self._lock:
                labels = (self.guards[0](flow), self.guards[2](step_type))
                child = self.abandoned.labels(*labels)
                if len(self._abandoned) < _CACHE_LIMIT:
                    self._abandoned[key] = child
        return child


_sets: PerRegistry[MetricSet] = PerRegistry()


def metric_set_for(
    registry: CollectorRegistry | None, config: MetricsConfig, *, exempt: frozenset[str]
) -> MetricSet:
    """The registry's :class:`MetricSet`, registered on first call (the default registry
    if ``registry`` is None).

    Raises:
        Exception: whatever the registry raised when registering (e.g. the names are taken
            by metrics that are not stepwatch's); the caller logs it and goes without.
    """
    reg: Any = REGISTRY if registry is None else registry
    return _sets.get(reg, lambda reg: MetricSet(reg, config, exempt))
