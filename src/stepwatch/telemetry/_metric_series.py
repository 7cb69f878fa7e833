"""The cached, labelled metric children of one step (flow, step, step_type) or one flow."""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._metric_set import MetricSet

__all__ = ["FlowSeries", "LiveCount", "StepSeries"]


class LiveCount:
    """The steps of one (flow, step_type) running now: the in-progress gauge's value.

    A step starts and ends in the same thread (its event loop's), so each thread keeps its
    own net count in ``by_thread`` (+1 at the start, -1 at the end, on the thread's own
    key: no lock, and no update lost to another thread); the gauge reads their sum at
    scrape time (``Gauge.set_function``). That is two dict operations per step instead of
    a locked gauge update at each end.
    """

    __slots__ = ("by_thread",)

    def __init__(self) -> None:
        self.by_thread: dict[int, int] = {}

    def __call__(self) -> float:
        return float(sum(list(self.by_thread.values())))


class _Exemplars:
    """Per (outcome, bucket) exemplar sampling, shared by step and flow series."""

    __slots__ = ()
    _set: MetricSet
    _exemplar_due: dict[str, list[float]]

    def exemplar_due(self, outcome: str, value: float, now: float, interval: float) -> bool:
        """Whether this observation's bucket may take a new exemplar now (then reserve it)."""
        buckets = self._set.config.duration_buckets
        due = self._exemplar_due.get(outcome)
        if due is None:
            due = self._exemplar_due[outcome] = [0.0] * (len(buckets) + 1)
        index = bisect_left(buckets, value)
        if now < due[index]:
            return False
        due[index] = now + interval
        return True


class StepSeries(_Exemplars):
    """The labelled children of one (flow, step, step_type), created on first use."""

    __slots__ = (
        "_cancelled",
        "_durations",
        "_exemplar_due",
        "_set",
        "_timeouts",
        "budget",
        "flow",
        "in_progress",
        "live",
        "step",
        "step_type",
    )

    def __init__(self, metric_set: MetricSet, flow: str, step: str, step_type: str) -> None:
        self._set = metric_set
        self.flow = flow
        self.step = step
        self.step_type = step_type
        self.in_progress = metric_set.in_progress.labels(flow, step_type)
        # thread id -> steps running (see LiveCount); None: move in_progress itself
        self.live: dict[int, int] | None = metric_set.live_count(
            (flow, step_type), self.in_progress
        )
        self._durations: dict[str, Any] = {}
        self._exemplar_due: dict[str, list[float]] = {}
        self._cancelled: dict[str, Any] = {}
        self._timeouts: Any = None
        self.budget: Any = None

    def duration(self, outcome: str) -> Any:
        """The duration histogram child for ``outcome``."""
        child = self._durations.get(outcome)
        if child is None:
            child = self._set.duration.labels(self.flow, self.step, self.step_type, outcome)
            self._durations[outcome] = child
        return child

    def budgeted(self) -> Any:
        """The budget-ratio histogram child of this step, created on first use with the
        timeouts counter (at 0)."""
        if self.budget is None:
            self._timeouts = self._set.timeouts.labels(self.flow, self.step, self.step_type)
            self.budget = self._set.budget_ratio.labels(self.flow, self.step, self.step_type)
        return self.budget

    def timeouts(self) -> Any:
        """The timeouts counter child."""
        self.budgeted()
        return self._timeouts

    def overrun(self) -> Any:
        """The overrun-seconds counter child (created on the first overrun)."""
        return self._set.overrun.labels(self.flow, self.step, self.step_type)

    def cancelled(self, cause: str) -> Any:
        """The children-cancelled counter child for ``cause`` (this step is the parallel)."""
        child = self._cancelled.get(cause)
        if child is None:
            child = self._set.children_cancelled.labels(self.flow, self.step, cause)
            self._cancelled[cause] = child
        return child


class FlowSeries(_Exemplars):
    """The labelled children of one flow's runs (the root step), created on first use."""

    __slots__ = ("_durations", "_exemplar_due", "_set", "_timeouts", "flow")

    def __init__(self, metric_set: MetricSet, flow: str) -> None:
        self._set = metric_set
        self.flow = flow
        self._durations: dict[str, Any] = {}
        self._exemplar_due: dict[str, list[float]] = {}
        self._timeouts: Any = None

    def duration(self, outcome: str) -> Any:
        """The flow duration histogram child for ``outcome``."""
        child = self._durations.get(outcome)
        if child is None:
            child = self._set.flow_duration.labels(self.flow, outcome)
            self._durations[outcome] = child
        return child

    def timeouts(self) -> Any:
        """The flow timeouts counter child (created at 0 by the first run with a deadline)."""
        if self._timeouts is None:
            self._timeouts = self._set.flow_timeouts.labels(self.flow)
        return self._timeouts
