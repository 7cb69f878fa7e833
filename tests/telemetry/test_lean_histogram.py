"""stepwatch's lean histogram writes exactly what prometheus-client's Histogram writes."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from stepwatch.telemetry._lean import LeanHistogram, histogram_class
from stepwatch.telemetry._metric_series import LiveCount

BUCKETS = (0.005, 0.1, 1.0, 2.5)
VALUES = [
    0.0,
    0.005,  # exactly on an edge: counted in that bucket (le is <=)
    0.0050001,
    0.05,
    1.0,
    2.5,
    2.6,  # above the last finite edge: +Inf only
    1e308,
    math.inf,
    -3.0,  # negative: the first bucket, and the sum goes down
    math.nan,  # in the sum only, in no bucket
]


def _pair(labels: tuple[str, ...] = ("flow", "step")) -> tuple[Any, Any, Any, Any]:
    """A prometheus-client Histogram and a LeanHistogram, alike, each on its own registry."""
    standard, lean = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h_seconds", "doc", labels, registry=standard, buckets=BUCKETS)
    h2 = LeanHistogram("h_seconds", "doc", labels, registry=lean, buckets=BUCKETS)
    return standard, lean, h1, h2


def _samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float, Any]]:
    """Every sample but the _created timestamps (set at creation, a few µs apart)."""
    out = []
    for family in registry.collect():
        for s in family.samples:
            value = s.value if not s.name.endswith("_created") else 0.0
            out.append((s.name, s.labels, value, s.exemplar))
    return out


def _same(a: list[Any], b: list[Any]) -> bool:
    """Equal sample lists, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x[:2] == y[:2]
        and (x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2])))
        and x[3] == y[3]
        for x, y in zip(a, b, strict=True)
    )


class TestExposition:
    def test_the_same_samples_for_the_same_observations(self) -> None:
        """Buckets (cumulative), count, sum and the _created sample match for every kind of
        value: on an edge, above the last edge, infinite, negative and NaN."""
        standard, lean, h1, h2 = _pair()
        for i, value in enumerate(VALUES):
            for h in (h1, h2):
                h.labels("f", f"s{i % 3}").observe(value)
        assert _same(_samples(standard), _samples(lean))
        assert any(name.endswith("_created") for name, *_ in _samples(lean))

    def test_the_same_text_and_openmetrics_exposition(self) -> None:
        """The scraped text is byte for byte the same, in both formats (minus _created)."""
        standard, lean, h1, h2 = _pair()
        for value in (0.001, 0.2, 0.2, 3.0):
            h1.labels("f", "s").observe(value, {"trace_id": "ab" * 16})
            h2.labels("f", "s").observe(value, {"trace_id": "ab" * 16})

        def text(generate: Any, registry: CollectorRegistry) -> list[str]:
            lines = generate(registry).decode().splitlines()
            return [line for line in lines if "_created" not in line]

        assert text(generate_latest, standard) == text(generate_latest, lean)
        om1, om2 = text(generate_openmetrics, standard), text(generate_openmetrics, lean)
        strip = [line.split(" # ")[0] for line in om1]  # exemplar timestamps differ
        assert strip == [line.split(" # ")[0] for line in om2]
        assert sum(" # {" in line for line in om2) == 3  # one exemplar per bucket observed

    def test_an_exemplar_is_the_latest_of_its_bucket(self) -> None:
        """Each bucket keeps the exemplar of its latest observation, with its value."""
        _, lean, _, h = _pair(())
        h.observe(0.2, {"trace_id": "1"})
        h.observe(0.3, {"trace_id": "2"})
        h.observe(0.001)  # no exemplar: the bucket has none
        exemplars = {s.labels["le"]: s.exemplar for s in _buckets(lean)}
        assert exemplars["0.005"] is None
        assert exemplars["1.0"] is not None
        assert exemplars["1.0"].labels == {"trace_id": "2"} and exemplars["1.0"].value == 0.3

    def test_labelled_children_are_separate(self) -> None:
        """Each label set has its own counts; removing one leaves the others."""
        _, lean, _, h = _pair()
        h.labels("f", "a").observe(0.2)
        h.labels("f", "b").observe(0.2)
        h.labels("f", "b").observe(0.2)
        h.remove("f", "a")
        counts = {
            s.labels["step"]: s.value
            for f in lean.collect()
            for s in f.samples
            if s.name == "h_seconds_count"
        }
        assert counts == {"b": 2.0}


def _buckets(registry: CollectorRegistry) -> list[Any]:
    return [s for f in registry.collect() for s in f.samples if s.name.endswith("_bucket")]


class TestConcurrency:
    def test_no_observation_is_lost_across_threads(self) -> None:
        """Eight threads observing into one child lose no count and no part of the sum."""
        _, lean, _, h = _pair(())
        barrier = threading.Barrier(8)

        def work() -> None:
            barrier.wait()
            for _ in range(5_000):
                h.observe(0.5)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        samples = {s.name: s.value for f in lean.collect() for s in f.samples}
        assert samples["h_seconds_count"] == 40_000
        assert samples["h_seconds_sum"] == 20_000.0


class TestChoice:
    def test_multiprocess_mode_keeps_prometheus_clients_histogram(self) -> None:
        """Values shared through files need prometheus-client's own class."""
        assert histogram_class(True) is Histogram
        assert histogram_class(False) is LeanHistogram

    def test_the_live_count_is_the_gauge_value(self) -> None:
        """The in-progress gauge reads the sum of the per-thread counts at scrape time."""
        registry = CollectorRegistry()
        child = Gauge("g", "doc", ("a",), registry=registry).labels("x")
        live = LiveCount()
        child.set_function(live)
        live.by_thread[1] = 2
        live.by_thread[2] = -1  # a thread may end steps another started counting: net
        assert registry.get_sample_value("g", {"a": "x"}) == 1.0
        live.by_thread[1] = 1
        assert registry.get_sample_value("g", {"a": "x"}) == 0.0

    def test_no_count_is_lost_across_threads(self) -> None:
        """Eight threads moving one live count each on its own key lose no update, while
        a scraper reads it (the sum ends at zero, every thread's at zero)."""
        live = LiveCount()
        barrier = threading.Barrier(9)
        seen: list[float] = []

        def work() -> None:
            thread = threading.get_ident()
            by_thread = live.by_thread
            barrier.wait()
            for _ in range(20_000):
                by_thread[thread] = by_thread.get(thread, 0) + 1
                by_thread[thread] = by_thread.get(thread, 0) - 1

        def scrape() -> None:
            barrier.wait()
            for _ in range(2_000):
                seen.append(live())

        threads = [threading.Thread(target=work) for _ in range(8)]
        threads.append(threading.Thread(target=scrape))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert live() == 0.0 and set(live.by_thread.values()) == {0}
        assert all(0.0 <= value <= 8.0 for value in seen)


@pytest.mark.parametrize("value", [0.0, 1e-9, 0.1, 1.0, 1e9])
def test_bucket_choice_matches_for_every_edge_case(value: float) -> None:
    """The bucket found by bisection is the one prometheus-client's linear walk finds."""
    standard, lean, h1, h2 = _pair(())
    h1.observe(value)
    h2.observe(value)
    assert _same(_samples(standard), _samples(lean))
