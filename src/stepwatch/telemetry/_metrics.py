"""Prometheus metrics of every step, recorded from its :class:`~stepwatch.StepEnded`.

Every metric, label, label value and bucket is documented in ``docs/telemetry.md``.
The metrics are registered when the first :class:`~stepwatch.FlowExecutor` with metrics
on is created for a registry (never at import); every later executor on that registry
shares them. Nothing here ever raises into a flow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from threading import get_ident
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import format_span_id, format_trace_id, get_current_span

from .._log import log
from .._steps import FLOW_TYPE
from ._abandoned import AbandonedListener
from ._metric_series import FlowSeries, StepSeries
from ._metrics_config import FIXED_FIELDS, MetricsConfig
from ._registry import multiprocess_mode

if TYPE_CHECKING:
    from .._context import StepContext
    from .._record import StepEnded
    from .._workers import WorkerTracker
    from ._metric_set import MetricSet

__all__ = ["Metrics", "make_metrics"]


def _exemplar() -> dict[str, str] | None:
    span = get_current_span()
    if not span.is_recording():
        return None
    context = span.get_span_context()
    return {
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
    }


class Metrics:
    """Records one execution of each step, and each run of a flow (its root step, type
    ``flow``) in the flow metrics, on one MetricSet."""

    __slots__ = ("exemplar_interval", "exemplars", "metrics")

    def __init__(self, metrics: MetricSet, exemplars: bool, interval: float) -> None:
        self.metrics = metrics
        self.exemplars = exemplars
        self.exemplar_interval = interval

    def start(self, ctx: StepContext) -> StepSeries | FlowSeries | None:
        step = ctx.step
        assert step is not None
        if step.type == FLOW_TYPE:  # a run's root step: the flow metrics
            try:
                return self.metrics.flow_series(ctx.flow_name)
            except Exception:
                return None
        try:
            series = self.metrics.series(ctx.flow_name, step.name, step.type)
            live = series.live
            if live is None:
                series.in_progress.inc()
            else:
                thread = get_ident()
                live[thread] = live.get(thread, 0) + 1
        except Exception:
            return None
        return series

    def end(
        self,
        record: StepEnded,
        series: StepSeries | FlowSeries | None,
        result: str,
        traced: bool = True,
    ) -> None:
        """Record the step's end; ``result`` is ``record.result`` (read once by the caller).
        ``traced=False``: stepwatch's tracing is on but a no-op (no SDK provider), so no
        span can be an exemplar and none is looked for."""
        if series is None:
            return
        if type(series) is FlowSeries:
            self.end_flow(record, series, result, traced)
            return
        assert type(series) is StepSeries  # for mypy; an identity check, no call
        try:
            live = series.live
            if live is None:
                series.in_progress.dec()
            else:
                thread = get_ident()
                live[thread] = live.get(thread, 0) - 1
        except Exception:
            pass
        try:
            outcome = record.outcome
            self.duration(record, series, result, traced)
            if outcome.timeout is not None:  # a budgeted step (ratio None if it is inf)
                budget = series.budget
                if budget is None:
                    budget = series.budgeted()
                ratio = record.budget_ratio
                if ratio is not None:
                    budget.observe(ratio)
            if result == "timeout":
                series.timeouts().inc()
            if outcome.overrun is not None:
                series.overrun().inc(outcome.overrun)
            if record.cancelled:
                for cause, n in record.cancelled.items():
                    series.cancelled(cause).inc(n)
        except Exception:
            pass

    def duration(
        self, record: StepEnded, series: StepSeries | FlowSeries, result: str, traced: bool
    ) -> None:
        """Observe the duration, with an exemplar when one is due."""
        elapsed = record.outcome.elapsed
        exemplar = None
        if (
            traced
            and self.exemplars
            and series.exemplar_due(result, elapsed, time.monotonic(), self.exemplar_interval)
        ):
            exemplar = _exemplar()
        series.duration(result).observe(elapsed, exemplar)

    def end_flow(self, record: StepEnded, series: FlowSeries, result: str, traced: bool) -> None:
        """One flow-duration observation; a flow timeout (``FlowTimeoutError``) counted."""
        try:
            self.duration(record, series, result, traced)
            if result == "timeout":
                series.timeouts().inc()
            elif record.outcome.timeout is not None:
                series.timeouts()  # a flow with a deadline: its counter exists from 0
        except Exception:
            pass


def make_metrics(
    config: MetricsConfig,
    *,
    registry: Any,
    workers: WorkerTracker,
    step_types: frozenset[str],
    near_timeout: float | None,
) -> Metrics | None:
    """The metrics of one executor (registering them on first use of ``registry``).

    ``step_types`` (the executor's registered types) are always admitted as label values;
    ``near_timeout`` is made a bucket edge of the budget-ratio histogram. Returns ``None``
    if the metrics cannot be registered (a ``metrics.unavailable`` warning is logged; the
    flows are unaffected).
    """
    try:
        from ._metric_set import metric_set_for

        if near_timeout is not None and near_timeout not in config.budget_ratio_buckets:
            edges = sorted({*config.budget_ratio_buckets, near_timeout})
            config = dataclasses.replace(config, budget_ratio_buckets=edges)
        metrics = metric_set_for(registry, config, exempt=step_types)
        used = metrics.config
        if any(getattr(used, name) != getattr(config, name) for name in FIXED_FIELDS):
            log(
                logging.WARNING,
                "metrics.config_conflict",
                {"used": repr(used), "ignored": repr(config)},
            )
        workers.listeners.append(AbandonedListener(metrics))
    except Exception as exc:
        with contextlib.suppress(Exception):
            log(logging.WARNING, "metrics.unavailable", {"error": f"{type(exc).__name__}: {exc}"})
        return None
    exemplars = config.exemplars and not multiprocess_mode()
    return Metrics(metrics, exemplars, config.exemplar_interval)
