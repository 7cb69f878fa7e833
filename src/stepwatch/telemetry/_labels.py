"""The cardinality guard for metric label values taken from user-supplied names.

Flow names, step names and user step types become Prometheus label values. Each label
admits at most ``MetricsConfig.max_label_values`` distinct values; every later new value
is reported as :data:`OTHER`. A value longer than ``MetricsConfig.max_label_length`` is
cut to its first characters plus a short hash of the whole (:func:`shorten`), so two long
names stay two series. The first overflow and the first cut of a label are logged once
(warning events ``metrics.label_overflow`` and ``metrics.label_truncated`` on the
``stepwatch`` logger); every overflow is counted in :attr:`LabelGuard.overflowed`.

A value admitted once stays admitted and an overflowed value stays ``_other`` (the set
never shrinks), so the same name always maps to the same series, e.g. for the
increment and the later decrement of a gauge.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from .._log import log

__all__ = ["OTHER", "LabelGuard", "shorten"]

OTHER = "_other"
"""The label value every overflowing name is mapped to."""


def shorten(value: str, limit: int) -> str:
    """``value`` if at most ``limit`` characters, else its head, ``…~`` and 8 hex digits of
    a hash of the whole value (exactly ``limit`` characters)."""
    if len(value) <= limit:
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{value[: limit - 10]}…~{digest}"


class LabelGuard:
    """Bounds the distinct values of one label (not thread-safe: callers hold a lock).

    Args:
        label: the label's name (``"flow"``, ``"step"``, ``"step_type"``).
        limit: how many distinct values are admitted.
        exempt: values always admitted without counting against ``limit``.
        max_length: values longer than this are shortened (see :func:`shorten`).

    Attributes:
        overflowed: how many look-ups were mapped to :data:`OTHER`.
        truncated: how many look-ups were shortened.
    """

    __slots__ = (
        "_exempt",
        "_seen",
        "_warned",
        "_warned_length",
        "label",
        "limit",
        "max_length",
        "overflowed",
        "truncated",
    )

    def __init__(
        self, label: str, limit: int, exempt: Iterable[str] = (), max_length: int = 128
    ) -> None:
        self.label = label
        self.limit = limit
        self.max_length = max_length
        self._exempt = frozenset(exempt)
        self._seen: set[str] = set()
        self._warned = False
        self._warned_length = False
        self.overflowed = 0
        self.truncated = 0

    def __call__(self, value: str) -> str:
        """Return ``value`` (shortened if too long) if admitted, admitting it if there is
        room, else ``_other``."""
        if value in self._seen or value in self._exempt or value == OTHER:
            return value
        if len(value) > self.max_length:
            value = self._cut(value)
            if value in self._seen:
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

    def _cut(self, value: str) -> str:
        self.truncated += 1
        short = shorten(value, self.max_length)
        if not self._warned_length:
            self._warned_length = True
            log(
                logging.WARNING,
                "metrics.label_truncated",
                {"label": self.label, "max_length": self.max_length, "value": short},
            )
        return short

    @property
    def admitted(self) -> int:
        """How many distinct values have been admitted so far."""
        return len(self._seen)
