"""Prometheus metrics: an executor decorator recording DESIGN.md §5 "Metrics".

Every metric, label, label value and bucket is documented in ``docs/telemetry.md``.
The metrics are registered when the first :class:`~stepwatch.FlowExecutor` with metrics
on is created for a registry (never at import); every later executor on that registry
shares them. Nothing here ever raises into a flow: every prometheus-client call is
guarded, and the step's own exception or cancellation always passes unchanged.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import TYPE_CHECKING, Any

import structlog
from anyio import current_time
from opentelemetry.trace import format_span_id, format_trace_id, get_current_span

from ._classify import CANCELLATION, TIMEOUT, classify
from ._metrics_config import (
    DEFAULT_BUDGET_RATIO_BUCKETS,
    DEFAULT_DURATION_BUCKETS,
    METRIC_NAMES,
    MetricsConfig,
)

if TYPE_CHECKING:
    from .._context import StepContext
    from .._protocols import ExecutorDecorator, StepExecutor
    from .._steps import Step
    from .._workers import WorkerEvent, WorkerTracker
    from ._metric_series import FlowSeries, StepSeries
    from ._metric_set import MetricSet

__all__ = [
    "DEFAULT_BUDGET_RATIO_BUCKETS",
    "DEFAULT_DURATION_BUCKETS",
    "METRIC_NAMES",
    "MetricsConfig",
    "make_metrics_decorator",
]

_logger = structlog.get_logger("stepwatch")


def multiprocess_mode() -> bool:
    """True when prometheus-client writes to ``PROMETHEUS_MULTIPROC_DIR`` (no exemplars)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ:
        return True
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def _exemplar() -> dict[str, str] | None:
    span = get_current_span()
    if not span.is_recording():
        return None
    context = span.get_span_context()
    return {
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
    }


class _MetricsExecutor:
    """Wraps one executor chain; records one execution of each step, and each run of a
    flow (its root step, type ``flow``) in the flow metrics."""

    __slots__ = ("exemplar_interval", "exemplars", "inner", "metrics")

    def __init__(
        self, inner: StepExecutor, metrics: MetricSet, exemplars: bool, interval: float
    ) -> None:
        self.inner = inner
        self.metrics = metrics
        self.exemplars = exemplars
        self.exemplar_interval = interval

    def can_execute(self, step: Step) -> bool:
        return self.inner.can_execute(step)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        if step.type == "flow":
            return await self._execute_flow(step, ctx)
        series: StepSeries | None
        try:
            series = self.metrics.series(ctx.flow_name, step.name, step.type)
            series.in_progress.inc()
        except Exception:
            series = None
        try:
            value = await self.inner.execute(step, ctx)
        except BaseException as exc:
            if series is not None:
                self._finish(series, step, ctx, exc)
            raise
        if series is not None:
            self._finish(series, step, ctx, None)
        return value

    async def _execute_flow(self, step: Step, ctx: StepContext) -> Any:
        try:
            value = await self.inner.execute(step, ctx)
        except BaseException as exc:
            self._finish_flow(ctx, exc)
            raise
        self._finish_flow(ctx, None)
        return value

    def _finish_flow(self, ctx: StepContext, exc: BaseException | None) -> None:
        """One flow-duration observation; a flow timeout (``FlowTimeoutError``) counted."""
        try:
            series: FlowSeries = self.metrics.flow_series(ctx.flow_name)
            outcome, _ = classify(ctx, exc)
            elapsed = current_time() - ctx.started
            exemplar = None
            if self.exemplars and series.exemplar_due(
                outcome, elapsed, time.monotonic(), self.exemplar_interval
            ):
                exemplar = _exemplar()
            series.duration(outcome).observe(elapsed, exemplar)
            timeout = ctx.timeout
            if outcome == TIMEOUT:
                series.timeouts().inc()
            elif timeout is not None and timeout > 0 and not math.isinf(timeout):
                series.timeouts()  # a flow with a deadline: its counter exists from 0
        except Exception:
            pass

    def _finish(
        self, series: StepSeries, step: Step, ctx: StepContext, exc: BaseException | None
    ) -> None:
        try:  # noqa: SIM105 - hot path: suppress() would build an object per call
            series.in_progress.dec()
        except Exception:
            pass
        try:
            outcome, _ = classify(ctx, exc)
            end = current_time()
            elapsed = end - ctx.started
            exemplar = None
            if self.exemplars and series.exemplar_due(
                outcome, elapsed, time.monotonic(), self.exemplar_interval
            ):
                exemplar = _exemplar()
            series.duration(outcome).observe(elapsed, exemplar)
            timeout = ctx.timeout
            if timeout is not None and timeout > 0 and not math.isinf(timeout):
                series.budgeted()
                if outcome == TIMEOUT:  # it used its whole budget; the overrun is in duration
                    series.budget.observe(1.0)
                elif outcome != CANCELLATION:  # a budget use of the last attempt
                    series.budget.observe((end - ctx.own_deadline + timeout) / timeout)
            if outcome == TIMEOUT:
                series.timeouts().inc()
            if step.type == "parallel" and ctx.progress is not None:
                _count_cancelled(series, ctx)
        except Exception:
            pass


def _count_cancelled(series: StepSeries, ctx: StepContext) -> None:
    """One increment per child of the parallel step cancelled or never started, by cause."""
    assert ctx.progress is not None
    counts: dict[str, int] = {}
    for outcome in ctx.progress.outcomes:
        if outcome is not None and outcome.cause is not None:
            cause = outcome.cause.value
            counts[cause] = counts.get(cause, 0) + 1
    for cause, n in counts.items():
        series.cancelled(cause).inc(n)


class _AbandonedListener:
    """A :class:`~stepwatch.WorkerListener` driving ``stepwatch_abandoned_workers``."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: MetricSet) -> None:
        self.metrics = metrics

    def worker_abandoned(self, event: WorkerEvent) -> None:
        with contextlib.suppress(Exception):
            self.metrics.abandoned_child(event.flow, event.step_type).inc()

    def worker_finished_late(self, event: WorkerEvent) -> None:
        with contextlib.suppress(Exception):
            self.metrics.abandoned_child(event.flow, event.step_type).dec()


def make_metrics_decorator(
    config: MetricsConfig, *, registry: Any, workers: WorkerTracker
) -> ExecutorDecorator:
    """The metrics decorator for one executor (registers the metrics on first use).

    Args:
        config: the options.
        registry: a prometheus-client ``CollectorRegistry``; the default one if ``None``.
        workers: the executor's tracker; a listener keeps the abandoned-workers gauge.

    Returns a decorator that leaves executors unwrapped if the metrics cannot be
    registered (a warning ``metrics.unavailable`` is logged; the flow is unaffected).
    """
    metrics: MetricSet | None = None
    exemplars = False
    try:
        from ._metric_set import metric_set_for

        metrics = metric_set_for(registry, config)
        used = metrics.config
        if (used.duration_buckets, used.budget_ratio_buckets, used.max_label_values) != (
            config.duration_buckets,
            config.budget_ratio_buckets,
            config.max_label_values,
        ):
            _logger.warning(
                "metrics.config_conflict",
                used=repr(used),
                ignored=repr(config),
            )
        exemplars = config.exemplars and not multiprocess_mode()
        workers.listeners.append(_AbandonedListener(metrics))
    except Exception as exc:
        with contextlib.suppress(Exception):
            _logger.warning("metrics.unavailable", error=f"{type(exc).__name__}: {exc}")

    def decorate(executor: StepExecutor) -> StepExecutor:
        if metrics is None:
            return executor
        return _MetricsExecutor(executor, metrics, exemplars, config.exemplar_interval)

    return decorate
