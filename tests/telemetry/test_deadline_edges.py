"""At the edges of deadlines (expired before children start, children that hold the loop
past the deadline) the outcomes, the error, the spans, the metrics and the logs agree on
every child, and the child that overran its deadline is the one named."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from stepwatch import (
    Flow,
    FlowExecutor,
    Outcome,
    Parallel,
    Request,
    Sequence,
    Status,
    StepTimeoutError,
)
from stepwatch.testing import OutcomeRecorder, blocking, hold_loop, sleeping
from tests.core.helpers import cpu_after_io
from tests.helpers import memory_tracer, sample

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


async def wait_then_block(params: Any) -> Any:
    await anyio.sleep(0.01)  # every sibling has started by now
    hold_loop(1.0)
    return params


def scenarios() -> dict[str, tuple[Flow, dict[str, Callable[[Any], Any]]]]:
    many = [Request(f"c{i}", "io_cpu", i) for i in range(100)]
    return {
        "start-loop-past-deadline": (
            Flow("f", Parallel("p", many, timeout=0.1)),
            {"io_cpu": cpu_after_io},
        ),
        "max-concurrency-workers": (
            Flow(
                "f",
                Parallel(
                    "p",
                    [Request(f"c{i}", "cpu") for i in range(10)],
                    timeout=0.1,
                    max_concurrency=2,
                ),
            ),
            {"cpu": blocking(0.03)},
        ),
        "blocker-and-innocent": (
            Flow(
                "f",
                Parallel(
                    "p", [Request("blocker", "block"), Request("innocent", "slow")], timeout=0.2
                ),
            ),
            {"block": wait_then_block, "slow": sleeping(10)},
        ),
        "parallel-after-an-expired-sequence": (
            Flow(
                "f",
                Sequence(
                    "seq",
                    [Request("hog", "block"), Parallel("p", [Request("c0", "slow")])],
                    timeout=0.1,
                ),
            ),
            {"block": blocking(0.2), "slow": sleeping(10)},
        ),
    }


@dataclass
class Observed:
    error: StepTimeoutError
    outcomes: dict[str, Outcome]
    spans: dict[str, ReadableSpan]
    registry: CollectorRegistry
    logs: list[dict[str, Any]]

    def metric(self, name: str, **labels: str) -> float:
        return sample(self.registry, name, flow="f", **labels)


async def observe(flow: Flow, handlers: dict[str, Callable[[Any], Any]]) -> Observed:
    provider, exporter = memory_tracer()
    registry = CollectorRegistry()
    recorder = OutcomeRecorder()
    ex = FlowExecutor(
        handlers=handlers, tracer_provider=provider, registry=registry, hooks=[recorder]
    )
    with capture_logs() as logs, pytest.raises(StepTimeoutError) as info:
        await ex.run(flow)
    spans = {str(s.attributes["stepwatch.step.name"]): s for s in exporter.get_finished_spans()}
    return Observed(info.value, recorder.by_name(), spans, registry, logs)


@pytest.mark.parametrize("name", list(scenarios()))
async def test_every_child_agrees_everywhere(name: str) -> None:
    """Each child of each parallel step has one outcome; a span exactly when it started,
    with the same outcome; the cancelled counter and the span's child counts match."""
    flow, handlers = scenarios()[name]
    seen = await observe(flow, handlers)
    result = seen.error.result
    assert result is not None
    for step in flow.walk():
        if not isinstance(step, Parallel) or step.name not in seen.spans:
            continue  # a parallel step that never started has no children's outcomes
        children = [seen.outcomes[child.name] for child in step.steps]
        assert [o.name for o in children] == [c.name for c in step.steps]
        for outcome in children:
            assert result.outcomes[outcome.name] is outcome
            span = seen.spans.get(outcome.name)
            if outcome.started:
                assert span is not None, outcome
                assert span.attributes["stepwatch.step.outcome"] == outcome.status.telemetry
            else:
                assert span is None and outcome.status is Status.CANCELLED
        causes = Counter(o.cause.value for o in children if o.cause is not None)
        for cause, count in causes.items():
            counted = seen.metric(
                "stepwatch_parallel_children_cancelled_total", step=step.name, cause=cause
            )
            assert counted == count, (cause, counted, count)
        span = seen.spans[step.name]
        statuses = Counter(o.status.value for o in children)
        for status in ("succeeded", "cancelled", "failed", "timed_out", "fallback"):
            attribute = span.attributes[f"stepwatch.parallel.children.{status}"]
            assert attribute == statuses.get(status, 0), status
    owner = seen.spans[seen.error.step_name or ""]
    assert owner.attributes["error.type"] == "timeout"
    assert (
        seen.metric(
            "stepwatch_step_timeouts_total",
            step=seen.error.step_name or "",
            step_type=seen.error.step_type or "",
        )
        == 1
    )


async def test_the_step_that_overran_is_named_by_span_metric_and_log() -> None:
    """The blocker's span is red with error.type=overrun and an overrun event, its overrun
    seconds are counted and logged; the waiting sibling is a plain cancellation."""
    flow, handlers = scenarios()["blocker-and-innocent"]
    seen = await observe(flow, handlers)
    blocker, innocent = seen.spans["blocker"], seen.spans["innocent"]
    assert blocker.status.status_code is StatusCode.ERROR
    assert blocker.attributes["error.type"] == "overrun"
    events = [e for e in blocker.events if e.name == "stepwatch.overrun"]
    assert len(events) == 1
    assert events[0].attributes is not None
    assert events[0].attributes["stepwatch.step.overrun"] == pytest.approx(0.81, abs=0.05)
    assert innocent.status.status_code is StatusCode.UNSET
    assert not [e for e in innocent.events if e.name == "stepwatch.overrun"]
    overrun = seen.metric(
        "stepwatch_step_overrun_seconds_total", step="blocker", step_type="request"
    )
    assert overrun == pytest.approx(0.81, abs=0.05)
    assert (
        seen.metric("stepwatch_step_overrun_seconds_total", step="innocent", step_type="request")
        == 0
    )
    logged = [e for e in seen.logs if e["event"] == "step.overrun"]
    assert [e["step"] for e in logged] == ["blocker"]
    assert logged[0]["overrun"] == pytest.approx(0.81, abs=0.05)


async def test_a_recovered_timeout_is_recorded_with_its_public_type_and_a_real_stack() -> None:
    """The exception event of a timeout hidden by on_timeout='partial' names the public
    class (stepwatch.StepTimeoutError) and carries the frames where the step ran."""
    provider, exporter = memory_tracer()
    ex = FlowExecutor(handlers={"slow": sleeping(10)}, tracer_provider=provider, metrics=False)
    flow = Flow("f", Parallel("p", [Request("a", "slow")], timeout=0.05, on_timeout="partial"))
    result = await ex.run(flow)
    assert result["p"] == {}
    span = {s.name: s for s in exporter.get_finished_spans()}["parallel p"]
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "stepwatch.StepTimeoutError"
    stack = str(event.attributes["exception.stacktrace"])
    assert stack.count('File "') >= 3, stack
    assert "_run_step" in stack
