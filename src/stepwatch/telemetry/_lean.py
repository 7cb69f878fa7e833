"""Histograms whose per-step observation costs one lock and no checks.

prometheus-client's ``Histogram.observe`` checks the metric is a labelled child, walks the
bucket bounds one by one and takes two locks (the sum, then the bucket). stepwatch
observes its own labelled children only, with values it computed, twice per step: the
checks and the walk were most of the histograms' cost per step (see
``docs/benchmarks.md``).

:class:`LeanHistogram` keeps each child's bucket counts, sum and exemplars in plain lists
under one lock; it finds the bucket by bisection. Its exposition is the one
prometheus-client writes for a ``Histogram``: the same samples (``_bucket`` with the
cumulative counts, ``_count``, ``_sum``, ``_created``), labels and exemplars. (The
in-progress gauge has its own shortcut: ``_metric_series.LiveCount``.)

In prometheus-client's multiprocess mode (values shared through files), its own class is
used: :func:`histogram_class` chooses.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left

from prometheus_client import Histogram
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

__all__ = ["LeanHistogram", "histogram_class"]


class LeanHistogram(Histogram):
    """A ``Histogram`` whose labelled children observe under one lock."""

    def _metric_init(self) -> None:
        bounds = self._upper_bounds
        self._created = time.time()
        self._mutex = threading.Lock()
        self._counts = [0.0] * len(bounds)
        self._total = 0.0
        self._exemplar_of: list[Exemplar | None] = [None] * len(bounds)
        self._edges = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        """Count ``amount`` in its bucket (the first bound >= it) and in the sum; keep
        ``exemplar`` (trace and span ids) as that bucket's exemplar."""
        index = bisect_left(self._upper_bounds, amount)
        with self._mutex:
            self._total += amount
            if amount == amount:  # a NaN is in the sum only, as in prometheus-client
                self._counts[index] += 1.0
                if exemplar:
                    self._exemplar_of[index] = Exemplar(exemplar, amount, time.time())

    def _child_samples(self) -> tuple[Sample, ...]:
        with self._mutex:
            counts = tuple(self._counts)
            total = self._total
            exemplars = tuple(self._exemplar_of)
        samples: list[Sample] = []
        cumulative = 0.0
        for edge, count, exemplar in zip(self._edges, counts, exemplars, strict=True):
            cumulative += count
            samples.append(Sample("_bucket", {"le": edge}, cumulative, None, exemplar))
        samples.append(Sample("_count", {}, cumulative, None, None))
        if self._upper_bounds[0] >= 0:
            samples.append(Sample("_sum", {}, total, None, None))
        if getattr(_prometheus_metrics, "_use_created", True):
            samples.append(Sample("_created", {}, self._created, None, None))
        return tuple(samples)


def histogram_class(multiprocess: bool) -> type[Histogram]:
    """:class:`LeanHistogram`, or prometheus-client's ``Histogram`` in multiprocess mode."""
    return Histogram if multiprocess else LeanHistogram
