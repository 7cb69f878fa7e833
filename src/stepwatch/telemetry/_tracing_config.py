"""TracingConfig: the options of the OpenTelemetry tracing integration."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import ValidationError
from .._record import checked_near_timeout

__all__ = ["UNSET", "TracingConfig"]

UNSET: Any = object()
"""The default of an option that was not given."""


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """Tracing options, passed as ``FlowExecutor(tracing=TracingConfig(...))``.

    Args:
        trace_children: how a parallel step's children are traced when the step does not
            say (``Parallel(trace_children=None)``): ``"nested"`` (child spans of the
            parallel span) or ``"detached"`` (each child starts its own trace, with a span
            link to the parallel span; for very large fan-outs).
        record_exceptions: record each exception as a span event (once, on the span of
            the step where it arose).
        max_pending_names: at most this many names in the ``stepwatch.pending`` attribute
            of a ``stepwatch.timeout`` event (``stepwatch.pending.count`` has the total).
        near_timeout_ratio: deprecated; use ``FlowExecutor(near_timeout=...)``, which
            drives the span event, the log event and the metrics alike. If given, it
            still sets the span event's threshold (``None``: no span event).

    Raises:
        ValidationError: a value out of range.
    """

    trace_children: Literal["nested", "detached"] = "nested"
    near_timeout_ratio: float | None = UNSET
    record_exceptions: bool = True
    max_pending_names: int = 100

    def __post_init__(self) -> None:
        if self.trace_children not in ("nested", "detached"):
            raise ValidationError(
                "TracingConfig.trace_children must be 'nested' or 'detached'; "
                f"got {self.trace_children!r}",
                field="TracingConfig.trace_children",
                value=self.trace_children,
            )
        ratio = self.near_timeout_ratio
        if ratio is not UNSET:
            warnings.warn(
                "TracingConfig.near_timeout_ratio is deprecated: use "
                "FlowExecutor(near_timeout=...), one setting for spans, logs and metrics",
                DeprecationWarning,
                stacklevel=3,
            )
            checked_near_timeout(ratio, "TracingConfig.near_timeout_ratio")
        if not isinstance(self.record_exceptions, bool):
            raise ValidationError(
                f"TracingConfig.record_exceptions must be True or False; "
                f"got {self.record_exceptions!r}",
                field="TracingConfig.record_exceptions",
                value=self.record_exceptions,
            )
        limit = self.max_pending_names
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValidationError(
                f"TracingConfig.max_pending_names must be an int >= 0; got {limit!r}",
                field="TracingConfig.max_pending_names",
                value=limit,
            )
