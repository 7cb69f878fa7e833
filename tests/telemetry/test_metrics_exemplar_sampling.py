"""Exemplars are sampled per bucket: each bucket gets a fresh one every interval, no more."""

from __future__ import annotations

import pytest
from opentelemetry.trace import format_span_id
from prometheus_client import CollectorRegistry

from stepwatch import Flow, FlowExecutor, Request, ValidationError
from stepwatch.telemetry import MetricsConfig
from tests.helpers import memory_tracer

from .test_metrics import HANDLERS, exemplars_of

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


async def _two_runs(interval: float) -> tuple[list[str], str]:
    provider, exporter = memory_tracer()
    registry = CollectorRegistry()
    ex = FlowExecutor(
        handlers=HANDLERS,
        registry=registry,
        tracer_provider=provider,
        metrics=MetricsConfig(exemplar_interval=interval),
    )
    flow = Flow("ok", [Request("fast", "fast")])
    await ex.run(flow)
    await ex.run(flow)
    span_ids = [
        format_span_id(s.context.span_id)
        for s in exporter.get_finished_spans()
        if s.name == "request fast"
    ]
    (exemplar,) = exemplars_of(registry, "fast")
    return span_ids, exemplar["span_id"]


async def test_second_observation_in_a_bucket_keeps_the_first_exemplar() -> None:
    """Within the interval a bucket's exemplar is not replaced by the next observation."""
    span_ids, exemplar = await _two_runs(interval=60)
    assert len(span_ids) == 2
    assert exemplar == span_ids[0]


async def test_interval_zero_attaches_an_exemplar_to_every_observation() -> None:
    """exemplar_interval=0 attaches one to every observation (the last one stays)."""
    span_ids, exemplar = await _two_runs(interval=0)
    assert exemplar == span_ids[1]


@pytest.mark.parametrize("value", [-1, float("inf"), True, "1s"])
def test_interval_validation(value: object) -> None:
    """A bad exemplar_interval names the field and the value."""
    with pytest.raises(ValidationError, match=r"MetricsConfig\.exemplar_interval"):
        MetricsConfig(exemplar_interval=value)  # type: ignore[arg-type]
