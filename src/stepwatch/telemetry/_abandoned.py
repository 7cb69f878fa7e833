"""The abandoned-workers gauge, moved by the executor's worker-thread events."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._workers import WorkerEvent
    from ._metric_set import MetricSet

__all__ = ["AbandonedListener"]


class AbandonedListener:
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
