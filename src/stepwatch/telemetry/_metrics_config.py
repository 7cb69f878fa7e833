"""MetricsConfig: the options of the Prometheus metrics (buckets, label limit, exemplars)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .._errors import ValidationError
from .._timeouts import as_float

__all__ = [
    "DEFAULT_BUDGET_RATIO_BUCKETS",
    "DEFAULT_DURATION_BUCKETS",
    "METRIC_NAMES",
    "MetricsConfig",
]

DURATION: Final = "stepwatch_step_duration_seconds"
TIMEOUTS: Final = "stepwatch_step_timeouts_total"
BUDGET_RATIO: Final = "stepwatch_step_timeout_budget_ratio"
IN_PROGRESS: Final = "stepwatch_steps_in_progress"
CHILDREN_CANCELLED: Final = "stepwatch_parallel_children_cancelled_total"
ABANDONED: Final = "stepwatch_abandoned_workers"
FLOW_DURATION: Final = "stepwatch_flow_duration_seconds"
FLOW_TIMEOUTS: Final = "stepwatch_flow_timeouts_total"
OVERRUN: Final = "stepwatch_step_overrun_seconds_total"

METRIC_NAMES: Final = (
    *(DURATION, TIMEOUTS, BUDGET_RATIO, IN_PROGRESS, CHILDREN_CANCELLED, ABANDONED),
    *(FLOW_DURATION, FLOW_TIMEOUTS, OVERRUN),
)
"""The name of every metric stepwatch defines (as passed to prometheus-client)."""

FIXED_FIELDS: Final = (
    *("duration_buckets", "budget_ratio_buckets"),
    *("max_label_values", "max_series", "max_label_length"),
)
"""The MetricsConfig fields the first configuration used with a registry fixes (the others
are per executor); a later executor that differs in one logs ``metrics.config_conflict``."""

DEFAULT_DURATION_BUCKETS: Final = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5),
    *(1.0, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
"""Seconds; every common timeout (and every built-in default timeout) is a bucket edge."""

DEFAULT_BUDGET_RATIO_BUCKETS: Final = (0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 1.0, 1.5)
"""elapsed / timeout; dense between 0.5 and 1 where "close to the deadline" is decided."""


def _buckets(field: str, value: object) -> tuple[float, ...]:
    where = f"MetricsConfig.{field}"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValidationError(
            f"{where} must be a sequence of increasing positive numbers; got {value!r}",
            field=where,
            value=value,
        )
    out: list[float] = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            item = as_float(where, item)
        if isinstance(item, bool) or not isinstance(item, int | float) or math.isnan(item):
            raise ValidationError(
                f"{where} must hold numbers; got {item!r} in {value!r}", field=where, value=value
            )
        if item <= 0 or (out and item <= out[-1]):
            raise ValidationError(
                f"{where} must be positive and strictly increasing; got {value!r}",
                field=where,
                value=value,
            )
        out.append(float(item))
    if not out or math.isinf(out[0]):
        raise ValidationError(
            f"{where} needs at least one finite bucket edge; got {value!r}",
            field=where,
            value=value,
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Metrics options, passed as ``FlowExecutor(metrics=MetricsConfig(...))``.

    Args:
        duration_buckets: upper bounds (s) of ``stepwatch_step_duration_seconds`` and
            ``stepwatch_flow_duration_seconds``.
        budget_ratio_buckets: upper bounds of ``stepwatch_step_timeout_budget_ratio``.
        max_label_values: distinct values admitted per label taken from user-supplied
            names (``flow``, ``step``, user step types); later new ones become ``_other``.
        max_series: distinct (flow, step, step type) combinations recorded per registry
            (and, separately, distinct flows in the flow metrics); later new ones are
            recorded under ``flow="_other", step="_other"``. Each step series is about
            100 samples in the exposition, so the default bounds it to ~25 MiB.
        max_label_length: label values longer than this are cut, keeping the first
            characters and a hash of the whole (``name…~1a2b3c4d``), so distinct long
            names stay distinct series.
        exemplars: attach ``trace_id``/``span_id`` exemplars to duration observations when
            a span is recording (never in multiprocess mode).
        exemplar_interval: at most one exemplar per (step or flow series, outcome, bucket) every
            this many seconds (``0`` = on every observation). prometheus-client keeps only
            the last exemplar of each bucket, so more would be overwritten before a scrape;
            every bucket (the slow ones included) still gets a fresh exemplar each interval.

    The first configuration used with a registry fixes its buckets and label limits
    (:data:`FIXED_FIELDS`); an executor with different ones on the same registry shares
    the existing metrics (a ``metrics.config_conflict`` warning is logged).

    Raises:
        ValidationError: a bucket list that is empty, not increasing or not positive, or a
            ``max_label_values`` below 1; ``.field`` names the field.
    """

    duration_buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS
    budget_ratio_buckets: Sequence[float] = DEFAULT_BUDGET_RATIO_BUCKETS
    max_label_values: int = 1000
    max_series: int = 2000
    max_label_length: int = 128
    exemplars: bool = True
    exemplar_interval: float = 1.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "duration_buckets", _buckets("duration_buckets", self.duration_buckets))
        set_(
            self,
            "budget_ratio_buckets",
            _buckets("budget_ratio_buckets", self.budget_ratio_buckets),
        )
        for name, low in (("max_label_values", 1), ("max_series", 1), ("max_label_length", 16)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValidationError(
                    f"MetricsConfig.{name} must be an integer >= {low}; got {value!r}",
                    field=f"MetricsConfig.{name}",
                    value=value,
                )
        interval = self.exemplar_interval
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 <= interval < float("inf")
        ):
            raise ValidationError(
                f"MetricsConfig.exemplar_interval must be a finite number of seconds >= 0; "
                f"got {interval!r}",
                field="MetricsConfig.exemplar_interval",
                value=interval,
            )
        if not isinstance(self.exemplars, bool):
            raise ValidationError(
                f"MetricsConfig.exemplars must be True or False; got {self.exemplars!r}",
                field="MetricsConfig.exemplars",
                value=self.exemplars,
            )
