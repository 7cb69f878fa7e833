"""The cardinality guard for metric label values taken from user-supplied names.

Flow names, step names and user step types become Prometheus label values. Each label
admits at most ``MetricsConfig.max_label_values`` distinct values; every later new value
is reported as :data:`OTHER`. The first overflow of a label is logged once (structlog
logger ``"stepwatch"``, warning event ``"metrics.label_overflow"``); every overflow is
counted in :attr:`LabelGuard.overflowed`.

A value admitted once stays admitted and an overflowed value stays ``_other`` (the set
never shrinks), so the same name always maps to the same series, e.g. for the
increment and the later decrement of a gauge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .._log import log

__all__ = ["OTHER", "LabelGuard"]

OTHER = "_other"
"""The label value every overflowing name is mapped to."""


class LabelGuard:
    """Bounds the distinct values of one label (not thread-safe: callers hold a lock).

    Args:
        label: the label's name (``"flow"``, ``"step"``, ``"step_type"``).
        limit: how many distinct values are admitted.
        exempt: values always admitted without counting against ``limit``.

    Attributes:
        overflowed: how many look-ups were mapped to :data:`OTHER`.
    """

    __slots__ = ("_exempt", "_seen", "_warned", "label", "limit", "overflowed")

    def __init__(self, label: str, limit: int, exempt: Iterable[str] = ()) -> None:
        self.label = label
        self.limit = limit
        self._exempt = frozenset(exempt)
        self._seen: set[str] = set()
        self._warned = False
        self.overflowed = 0

    def __call__(self, value: str) -> str:
        """Return ``value`` if admitted (admitting it if there is room), else ``_other``."""
        if value in self._seen or value in self._exempt or value == OTHER:
            return value
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value
        self.overflowed += 1
        if not self._warned:
            self._warned = True
            log(
                logging.WARNING,
                "metrics.label_overflow",
                {"label": self.label, "limit": self.limit, "value": value, "replacement": OTHER},
            )
        return OTHER

    @property
    def admitted(self) -> int:
        """How many distinct values have been admitted so far."""
        return len(self._seen)
