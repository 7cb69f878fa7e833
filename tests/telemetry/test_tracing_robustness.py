"""Tracing never changes behaviour: same results with it on or off, broken exporters
and unreachable endpoints never break or slow a flow."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from stepwatch import (
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    RunResult,
    StepFailedError,
    StepwatchError,
)
from stepwatch import (
    Sequence as Seq,
)
from stepwatch.telemetry import TracingConfig
from stepwatch.telemetry._instrument import Telemetry
from stepwatch.testing import sleeping as sleeper
from tests.helpers import memory_tracer

pytestmark = pytest.mark.anyio


async def boom(params: Any) -> Any:
    await anyio.sleep(0.01)
    raise RuntimeError("backend exploded")


def blocking(params: Any) -> str:
    time.sleep(0.01)
    return "blocking"


HANDLERS: dict[str, Callable[[Any], Any]] = {
    "fast": sleeper(0.01, "fast"),
    "slow": sleeper(10, "slow"),
    "boom": boom,
    "blocking": blocking,
}

FLOWS = {
    "success": Flow(
        "ok",
        [
            Request("first", "fast"),
            Seq("seq", [Parallel("fan", [Request("a", "fast"), Request("b", "blocking")])]),
        ],
    ),
    "timeout": Flow(
        "to", Parallel("fan", [Request("a", "fast"), Request("b", "slow")], timeout=0.1)
    ),
    "partial": Flow(
        "pa",
        Parallel(
            "fan", [Request("a", "fast"), Request("b", "slow")], timeout=0.1, on_timeout="partial"
        ),
    ),
    "failure": Flow("fa", Parallel("fan", [Request("a", "boom"), Request("b", "slow")])),
    "flow-timeout": Flow("ft", [Request("a", "fast"), Request("b", "slow")], timeout=0.1),
    "fallback": Flow("fb", Request("a", "slow", timeout=0.05, fallback="cached")),
}


def signature(result: RunResult | None, error: BaseException | None) -> tuple[Any, ...]:
    """What a caller can observe, minus timings."""
    if error is not None:
        assert isinstance(error, StepwatchError)
        return (
            type(error),
            error.step_name,
            getattr(error, "pending", None),
            dict(getattr(error, "partial", {})),
            _outcomes(error.result),
        )
    assert result is not None
    return (dict(result), result.output, _outcomes(result))


def _outcomes(result: RunResult | None) -> dict[str, Any]:
    assert result is not None
    return {n: (o.status, o.cause, o.attempts, o.ok) for n, o in result.outcomes.items()}


async def observe(executor: FlowExecutor, flow: Flow) -> tuple[Any, ...]:
    try:
        result = await executor.run(flow)
    except StepwatchError as exc:
        return signature(None, exc)
    return signature(result, None)


def provider_with(*processors: SpanProcessor) -> TracerProvider:
    provider = TracerProvider()
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


class RaisingExporter(SpanExporter):
    """An exporter whose every export raises."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector unreachable")

    def shutdown(self) -> None:
        pass


class RaisingProcessor(SpanProcessor):
    """A span processor that raises on start or on end."""

    def __init__(self, *, on_start: bool, on_end: bool) -> None:
        self.raise_on_start = on_start
        self.raise_on_end = on_end

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.raise_on_start:
            raise RuntimeError("on_start exploded")

    def on_end(self, span: ReadableSpan) -> None:
        if self.raise_on_end:
            raise RuntimeError("on_end exploded")


def executor(**kwargs: Any) -> FlowExecutor:
    return FlowExecutor(handlers=HANDLERS, metrics=False, logging=False, **kwargs)


class TestSameBehaviour:
    @pytest.mark.parametrize("case", list(FLOWS))
    async def test_tracing_on_and_off_give_the_same_results(self, case: str) -> None:
        """Results, errors and outcomes are identical with tracing on, detached, and off."""
        flow = FLOWS[case]
        provider, exporter = memory_tracer()
        off = await observe(executor(tracing=False), flow)
        on = await observe(executor(tracer_provider=provider), flow)
        detached = await observe(
            executor(tracer_provider=provider, tracing=TracingConfig(trace_children="detached")),
            flow,
        )
        assert on == off
        assert detached == off
        assert exporter.get_finished_spans()  # tracing really was on
        provider.shutdown()


class TestBrokenExporters:
    @pytest.mark.parametrize("case", ["success", "timeout", "failure"])
    async def test_raising_exporter_never_breaks_a_flow(
        self, case: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An exporter that raises on every export changes nothing for the flow."""
        exporter = RaisingExporter()
        provider = provider_with(SimpleSpanProcessor(exporter))
        flow = FLOWS[case]
        assert await observe(executor(tracer_provider=provider), flow) == await observe(
            executor(tracing=False), flow
        )
        assert exporter.calls > 0
        provider.shutdown()

    @pytest.mark.parametrize(
        ("on_start", "on_end"),
        [
            pytest.param(True, False, id="on_start"),
            pytest.param(False, True, id="on_end"),
            pytest.param(True, True, id="both"),
        ],
    )
    @pytest.mark.parametrize("case", ["success", "timeout", "failure"])
    async def test_raising_span_processor_never_breaks_a_flow(
        self, case: str, on_start: bool, on_end: bool
    ) -> None:
        """A span processor raising inside start_span or span.end changes nothing."""
        provider = provider_with(RaisingProcessor(on_start=on_start, on_end=on_end))
        flow = FLOWS[case]
        assert await observe(executor(tracer_provider=provider), flow) == await observe(
            executor(tracing=False), flow
        )
        provider.shutdown()

    async def test_raising_on_start_keeps_metrics_and_log_events(self) -> None:
        """A span processor whose on_start raises costs the steps their spans, nothing else."""
        broken = provider_with(RaisingProcessor(on_start=True, on_end=False))
        healthy, _ = memory_tracer()
        assert await telemetry_of(broken) == await telemetry_of(healthy)
        broken.shutdown()
        healthy.shutdown()

    async def test_a_failed_start_still_logs_the_steps_failure(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When step_started raises anyway (token None), step_ended still logs step.failed."""

        def broken(self: Telemetry, ctx: Any) -> Any:
            raise RuntimeError("step_started exploded")

        monkeypatch.setattr(Telemetry, "step_started", broken)
        ex = FlowExecutor(handlers=HANDLERS, tracing=False, registry=CollectorRegistry())
        with capture_logs() as logs, pytest.raises(StepFailedError):
            await ex.run(Flow("f", Request("a", "boom")))
        assert [(e["event"], e["step"]) for e in logs] == [("step.failed", "a")]


async def telemetry_of(provider: TracerProvider) -> tuple[Any, ...]:
    """The metric counts and log events of the "failure" flow traced through ``provider``."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, tracer_provider=provider, registry=registry)
    with capture_logs() as logs:
        await observe(ex, FLOWS["failure"])
    counts = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name.endswith(("_count", "_total"))
    }
    assert counts  # metrics really were recorded
    return counts, sorted((e["event"], e["step"]) for e in logs)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens here any more: connection refused


class TestMessagesUtf8CannotEncode:
    async def test_a_lone_surrogate_in_an_error_message_is_exported_escaped(self) -> None:
        """An exception message holding a lone surrogate (json.loads of bad input) is
        escaped in the error, the span and the log event, so OTLP can encode the batch."""
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        async def bad(params: Any) -> Any:
            raise ValueError("unexpected key \ud800 in the payload")

        provider, exporter = memory_tracer()
        ex = FlowExecutor(handlers={"bad": bad}, tracer_provider=provider, metrics=False)
        with capture_logs() as logs, pytest.raises(StepFailedError) as caught:
            await ex.run(Flow("f", Request("r", "bad", retry=None)))
        spans = exporter.get_finished_spans()
        encode_spans(spans).SerializeToString()  # raised UnicodeEncodeError before
        assert "\\ud800" in str(caught.value)
        span = next(s for s in spans if s.name == "request r")
        assert span.status.description is not None
        assert "\\ud800" in span.status.description
        event = next(e for e in span.events if e.name == "exception")
        assert event.attributes is not None
        assert "\\ud800" in str(event.attributes["exception.message"])
        str(event.attributes["exception.stacktrace"]).encode("utf-8")
        failed = next(e for e in logs if e["event"] == "step.failed")
        assert "\\ud800" in failed["error"]
        provider.shutdown()


class TestEndpointDown:
    async def test_unreachable_otlp_endpoint_never_slows_a_flow(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Batch-exporting to a refused OTLP endpoint costs the flow no noticeable time."""
        exporter = OTLPSpanExporter(
            endpoint=f"http://127.0.0.1:{_closed_port()}/v1/traces", timeout=0.5
        )
        processor = BatchSpanProcessor(exporter, schedule_delay_millis=5, max_export_batch_size=8)
        provider = provider_with(processor)
        flow = FLOWS["success"]
        traced, plain = executor(tracer_provider=provider), executor(tracing=False)
        expected = await observe(plain, flow)

        async def timed(ex: FlowExecutor) -> float:
            start = time.perf_counter()
            for _ in range(15):
                assert await observe(ex, flow) == expected
            return time.perf_counter() - start

        baseline = await timed(plain)
        with_down_endpoint = await timed(traced)
        assert with_down_endpoint < baseline * 1.5 + 0.1
        start = time.perf_counter()
        provider.shutdown()  # gives up on the refused endpoint without hanging
        assert time.perf_counter() - start < 3
        failed = [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
        assert failed  # the exports really were attempted, and failed
        assert all("Failed to export" in r.getMessage() for r in failed)


class TestWorkerThreads:
    async def test_sync_handler_spans_nest_under_the_request_span(self) -> None:
        """A sync handler runs in a worker thread with its step's span current."""
        provider, exporter = memory_tracer()
        tracer = provider.get_tracer("app")

        def query(params: Any) -> str:
            with tracer.start_as_current_span("db query"):
                time.sleep(0.01)
            return "rows"

        ex = FlowExecutor(
            handlers={"query": query}, tracer_provider=provider, metrics=False, logging=False
        )
        await ex.run(Flow("f", Parallel("p", [Request("a", "query"), Request("b", "query")])))
        spans = exporter.get_finished_spans()
        by_id = {s.context.span_id: s for s in spans if s.context is not None}
        queries = [s for s in spans if s.name == "db query"]
        assert len(queries) == 2
        parents = sorted(by_id[s.parent.span_id].name for s in queries if s.parent is not None)
        assert parents == ["request a", "request b"]
        provider.shutdown()
