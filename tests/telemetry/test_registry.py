"""One metric set per registry, registered all or nothing (``telemetry/_registry.py``)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from stepwatch.http._telemetry import http_metrics
from stepwatch.telemetry._registry import PerRegistry, register_all


class Unreferenceable:
    """A duck-typed registry without ``__weakref__``: it delegates to a real one."""

    __slots__ = ("inner",)

    def __init__(self) -> None:
        self.inner = CollectorRegistry()

    def register(self, metric: Any) -> None:
        self.inner.register(metric)

    def unregister(self, metric: Any) -> None:
        self.inner.unregister(metric)


class TestRegisterAll:
    """register_all registers every metric or none."""

    def test_a_refused_metric_leaves_the_registry_as_it_was(self) -> None:
        """When the second name is taken, the first metric is unregistered again."""
        registry = CollectorRegistry()
        Counter("taken", "already there", registry=registry)
        first = Counter("fresh", "new", registry=None)
        second = Counter("taken", "clashes", registry=None)
        with pytest.raises(ValueError, match="taken"):
            register_all(registry, [first, second])
        assert registry.get_sample_value("fresh_total") is None
        assert registry.get_sample_value("taken_total") == 0.0


class TestPerRegistry:
    """PerRegistry makes one object per registry and forgets it with the registry."""

    def test_one_object_per_registry(self) -> None:
        """The same registry gets the same object; another registry another one."""
        made: list[Any] = []
        per: PerRegistry[object] = PerRegistry()

        def make(registry: Any) -> object:
            made.append(registry)
            return object()

        a, b = CollectorRegistry(), CollectorRegistry()
        assert per.get(a, make) is per.get(a, make)
        assert per.get(b, make) is not per.get(a, make)
        assert made == [a, b]

    def test_dropped_with_the_registry(self) -> None:
        """An object made for a registry does not keep the registry alive."""
        per: PerRegistry[list[int]] = PerRegistry()
        registry = CollectorRegistry()
        per.get(registry, lambda _: [1])
        assert len(per._weak) == 1
        del registry
        gc.collect()
        assert len(per._weak) == 0

    def test_a_registry_without_weak_references_is_kept_by_identity(self) -> None:
        """A registry that cannot be weakly referenced still gets exactly one object."""
        per: PerRegistry[object] = PerRegistry()
        registry = Unreferenceable()
        first = per.get(registry, lambda _: object())
        assert per.get(registry, lambda _: object()) is first
        assert per.get(Unreferenceable(), lambda _: object()) is not first

    def test_a_failing_factory_remembers_nothing(self) -> None:
        """When making the object raises, the next call tries again."""
        per: PerRegistry[str] = PerRegistry()
        registry = CollectorRegistry()

        def broken(_: Any) -> str:
            raise ValueError("refused")

        with pytest.raises(ValueError, match="refused"):
            per.get(registry, broken)
        assert per.get(registry, lambda _: "made") == "made"


def test_http_metrics_on_a_registry_without_weak_references() -> None:
    """stepwatch.http's metrics work on a duck-typed registry, once per registry."""
    registry: Any = Unreferenceable()
    metrics = http_metrics(registry)
    assert metrics is not None
    assert http_metrics(registry) is metrics
    assert (
        registry.inner.get_sample_value("stepwatch_inbound_rejected_total", {"reason": "spent"})
        == 0.0
    )
