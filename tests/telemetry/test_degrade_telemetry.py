"""What degrading looks like in spans, metrics and hooks: failures stay visible."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from stepwatch import Flow, FlowExecutor, Parallel, Request, StepEnded
from stepwatch.testing import failing, sleeping
from tests.helpers import memory_tracer, sample

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


class BackendDown(Exception):
    """A backend error."""


HANDLERS = {
    "fast": sleeping(0.01, "fast"),
    "hang": sleeping(100, "hang"),
    "boom": failing(BackendDown("backend down"), after=0.02),
}


class Records:
    """A hook keeping every StepEnded by step name."""

    def __init__(self) -> None:
        self.by_name: dict[str, StepEnded] = {}

    def step_finished(self, record: StepEnded, /) -> None:
        self.by_name[record.step.name] = record


class Observed:
    def __init__(self) -> None:
        self.provider, self.exporter = memory_tracer()
        self.registry = CollectorRegistry()
        self.records = Records()

    async def run(self, flow: Flow) -> Any:
        executor = FlowExecutor(
            handlers=HANDLERS,
            tracer_provider=self.provider,
            registry=self.registry,
            hooks=[self.records],
            logging=False,
        )
        return await executor.run(flow)

    def spans(self) -> dict[str, ReadableSpan]:
        return {s.name: s for s in self.exporter.get_finished_spans()}

    def count(self, step: str, step_type: str, outcome: str) -> float:
        labels = {"flow": "f", "step": step, "step_type": step_type, "outcome": outcome}
        return sample(self.registry, "stepwatch_step_duration_seconds_count", **labels)

    def timeouts(self, step: str, step_type: str = "request") -> float:
        labels = {"flow": "f", "step": step, "step_type": step_type}
        return sample(self.registry, "stepwatch_step_timeouts_total", **labels)


@pytest.fixture
def observed() -> Iterator[Observed]:
    observed = Observed()
    yield observed
    observed.provider.shutdown()


def exception_types(span: ReadableSpan) -> list[str]:
    events = [e for e in span.events if e.name == "exception"]
    return [str((e.attributes or {})["exception.type"]) for e in events]


class TestDegradedParallel:
    async def test_failed_children_stay_visible(self, observed: Observed) -> None:
        """The degraded group is a success (UNSET); its failed and timed-out children are
        red spans, counted by outcome, the timeout counted as a timeout."""
        group = Parallel(
            "g",
            [Request("ok", "fast"), Request("down", "boom"), Request("slow", "hang", timeout=0.05)],
            on_failure="partial",
        )
        result = await observed.run(Flow("f", group))
        assert result["g"] == {"ok": "fast"}
        spans = observed.spans()
        parallel = spans["parallel g"]
        assert parallel.status.status_code is StatusCode.UNSET
        attributes = dict(parallel.attributes or {})
        assert attributes["stepwatch.step.outcome"] == "success"
        assert attributes["stepwatch.parallel.children.succeeded"] == 1
        assert attributes["stepwatch.parallel.children.failed"] == 1
        assert attributes["stepwatch.parallel.children.timed_out"] == 1
        assert exception_types(parallel) == []

        down = spans["request down"]
        assert down.status.status_code is StatusCode.ERROR
        assert (down.attributes or {})["error.type"] == f"{__name__}.BackendDown"
        assert exception_types(down) == [f"{__name__}.BackendDown"]
        slow = spans["request slow"]
        assert (slow.attributes or {})["error.type"] == "timeout"

        assert observed.count("g", "parallel", "success") == 1
        assert observed.count("down", "request", "failure") == 1
        assert observed.count("slow", "request", "timeout") == 1
        assert observed.timeouts("slow") == 1

        record = observed.records.by_name["g"]
        assert record.result == "success" and record.outcome.recovered
        assert record.children is not None and record.children["failed"] == 1


class TestFailureFallback:
    async def test_a_failure_fallback_is_a_failure_in_telemetry(self, observed: Observed) -> None:
        """A fallback used because the step raised: outcome failure, error.type the class
        it raised, ERROR, the exception recorded; never counted as a timeout."""
        step = Request("r", "boom", fallback="cached", fallback_on="failure")
        result = await observed.run(Flow("f", step))
        assert result["r"] == "cached"
        span = observed.spans()["request r"]
        attributes = dict(span.attributes or {})
        assert attributes["stepwatch.step.outcome"] == "failure"
        assert attributes["error.type"] == f"{__name__}.BackendDown"
        assert span.status.status_code is StatusCode.ERROR
        assert "backend down" in (span.status.description or "")
        assert len(exception_types(span)) == 1
        assert not [e for e in span.events if e.name == "stepwatch.timeout"]
        assert observed.count("r", "request", "failure") == 1
        assert observed.timeouts("r") == 0
        flow_span = observed.spans()["flow f"]
        assert flow_span.status.status_code is StatusCode.UNSET  # the error stopped at r
        record = observed.records.by_name["r"]
        assert record.result == "failure" and record.outcome.status.value == "fallback"
        assert record.error_type == f"{__name__}.BackendDown" and record.arose_here

    async def test_a_timeout_fallback_is_still_a_timeout(self, observed: Observed) -> None:
        """With both, a timeout fallback keeps its telemetry: outcome timeout, counted."""
        step = Request("r", "hang", timeout=0.05, fallback="x", fallback_on=("timeout", "failure"))
        await observed.run(Flow("f", step))
        attributes = dict(observed.spans()["request r"].attributes or {})
        assert attributes["stepwatch.step.outcome"] == "timeout"
        assert attributes["error.type"] == "timeout"
        assert observed.timeouts("r") == 1

    async def test_a_composite_failure_fallback_names_the_error_passing_through(
        self, observed: Observed
    ) -> None:
        """A parallel step falling back on its child's failure: error.type is the child's
        error (a StepFailedError passing through), not recorded again on the parent."""
        group = Parallel("g", [Request("down", "boom")], fallback={}, fallback_on="failure")
        await observed.run(Flow("f", group))
        span = observed.spans()["parallel g"]
        attributes = dict(span.attributes or {})
        assert attributes["stepwatch.step.outcome"] == "failure"
        assert attributes["error.type"] == "stepwatch.StepFailedError"
        assert exception_types(span) == []
        assert exception_types(observed.spans()["request down"]) == [f"{__name__}.BackendDown"]
