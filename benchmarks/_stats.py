"""Small statistics and timing helpers shared by the benchmark cases."""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Series:
    """Repeated measurements of one figure (``unit`` says what a value is)."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    @property
    def low(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def high(self) -> float:
        return max(self.values) if self.values else math.nan

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (p in 0..100) of the values."""
        if not self.values:
            return math.nan
        ordered = sorted(self.values)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]

    def fmt(self, digits: int = 1) -> str:
        """``median (min–max)``."""
        if not self.values:
            return "n/a"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def ratio(a: Series, b: Series) -> float:
    """Ratio of medians a / b."""
    if not a.values or not b.values or b.median == 0:
        return math.nan
    return a.median / b.median


def rotated(names: list[str], r: int) -> list[str]:
    """The order of repeat ``r``: ``names`` rotated by ``r``, so that drift hits each alike."""
    k = r % len(names)
    return names[k:] + names[:k]


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    """Seconds one call of ``fn`` takes (after a full collection, GC left on)."""
    gc.collect()
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start
