"""Prometheus metrics decorator (STUB: to be implemented by the metrics issue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._protocols import ExecutorDecorator, StepExecutor
from .._workers import WorkerTracker

__all__ = ["MetricsConfig", "make_metrics_decorator"]


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Metrics options (stub)."""


def make_metrics_decorator(
    config: MetricsConfig, *, registry: Any, workers: WorkerTracker
) -> ExecutorDecorator:
    def decorate(executor: StepExecutor) -> StepExecutor:
        return executor

    return decorate
