"""End to end: the real OTLP/HTTP exporter → an OTLP receiver on 127.0.0.1 → protobuf.

What Jaeger (≥ 1.35, OTLP native) would receive: trace ids, parent span ids, links,
status, attributes and the resource's ``service.name``.
"""

from __future__ import annotations

import gzip
import importlib.util
import sys
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import stepwatch
from stepwatch import Flow, FlowExecutor, Parallel, Request, Sequence, StepTimeoutError
from stepwatch.telemetry import otlp_tracer_provider

pytestmark = pytest.mark.anyio

SERVICE = "stepwatch-e2e"


# -- the receiver ------------------------------------------------------------------------


@dataclass
class Received:
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class OTLPHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with received.lock:
                received.requests.append(request)
                received.paths.append(self.path)
                received.encodings.append(encoding)
            payload = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return OTLPHandler


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def provider(receiver: tuple[str, Received]) -> Iterator[TracerProvider]:
    endpoint, _ = receiver
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    exporter = OTLPSpanExporter(endpoint=endpoint, compression=Compression.Gzip, timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    yield provider
    provider.shutdown()


# -- decoding ----------------------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, str(kind))


def _attributes(items: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(items)
    return {kv.key: _value(kv.value) for kv in pairs}


@dataclass
class Decoded:
    service: str
    scope: str
    version: str
    span: PbSpan

    @property
    def attributes(self) -> dict[str, Any]:
        return _attributes(self.span.attributes)


def decode(received: Received) -> dict[str, Decoded]:
    spans: dict[str, Decoded] = {}
    with received.lock:
        requests = list(received.requests)
    for request in requests:
        for resource_spans in request.resource_spans:
            service = _attributes(resource_spans.resource.attributes)["service.name"]
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    assert span.name not in spans
                    spans[span.name] = Decoded(
                        service, scope_spans.scope.name, scope_spans.scope.version, span
                    )
    return spans


def sleeper(seconds: float, value: Any) -> Callable[[Any], Awaitable[Any]]:
    async def handler(params: Any) -> Any:
        await anyio.sleep(seconds)
        return value

    return handler


HANDLERS = {"fast": sleeper(0.01, "fast"), "slow": sleeper(10, "slow")}


def executor(provider: TracerProvider) -> FlowExecutor:
    return FlowExecutor(handlers=HANDLERS, tracer_provider=provider, metrics=False, logging=False)


# -- tests -------------------------------------------------------------------------------


async def test_timed_out_fan_out_arrives_as_a_tree(
    receiver: tuple[str, Received], provider: TracerProvider
) -> None:
    """A timed-out parallel in a sequence arrives as one tree with the right ids and status."""
    flow = Flow(
        "checkout",
        Sequence(
            "seq",
            Parallel(
                "enrich", [Request("inventory", "fast"), Request("pricing", "slow")], timeout=0.5
            ),
        ),
    )
    with pytest.raises(StepTimeoutError):
        await executor(provider).run(flow)
    assert provider.force_flush(5_000)
    _, received = receiver
    assert set(received.paths) == {"/v1/traces"}
    assert set(received.encodings) == {"gzip"}
    spans = decode(received)
    assert set(spans) == {
        "flow checkout",
        "sequence seq",
        "parallel enrich",
        "request inventory",
        "request pricing",
    }
    root = spans["flow checkout"].span
    assert len(root.trace_id) == 16
    assert root.parent_span_id == b""
    for d in spans.values():
        assert d.service == SERVICE
        assert d.scope == "stepwatch"
        assert d.version == stepwatch.__version__
        assert d.span.trace_id == root.trace_id
        assert d.span.kind == PbSpan.SPAN_KIND_INTERNAL
    parents = {
        "sequence seq": "flow checkout",
        "parallel enrich": "sequence seq",
        "request inventory": "parallel enrich",
        "request pricing": "parallel enrich",
    }
    for child, parent in parents.items():
        assert spans[child].span.parent_span_id == spans[parent].span.span_id, child
    enrich = spans["parallel enrich"]
    assert enrich.span.status.code == PbStatus.STATUS_CODE_ERROR
    assert enrich.attributes["error.type"] == "timeout"
    assert enrich.attributes["stepwatch.step.outcome"] == "timeout"
    assert enrich.attributes["stepwatch.step.timeout"] == 0.5
    assert enrich.attributes["stepwatch.parallel.children.cancelled"] == 1
    (timeout_event,) = [e for e in enrich.span.events if e.name == "stepwatch.timeout"]
    assert _attributes(timeout_event.attributes)["stepwatch.pending"] == ("pricing",)
    pricing = spans["request pricing"]
    assert pricing.span.status.code == PbStatus.STATUS_CODE_UNSET
    assert pricing.attributes["stepwatch.step.outcome"] == "cancellation"
    assert pricing.attributes["stepwatch.cancel.cause"] == "deadline"
    assert pricing.attributes["stepwatch.parallel.child.index"] == 1
    inventory = spans["request inventory"]
    assert inventory.span.status.code == PbStatus.STATUS_CODE_UNSET
    assert inventory.attributes["stepwatch.step.outcome"] == "success"
    assert inventory.attributes["stepwatch.flow.name"] == "checkout"
    assert spans["flow checkout"].span.status.code == PbStatus.STATUS_CODE_ERROR


async def test_detached_children_arrive_as_linked_traces(
    receiver: tuple[str, Received], provider: TracerProvider
) -> None:
    """Detached children arrive as separate traces, each linked to the parallel span."""
    flow = Flow(
        "fanout",
        Parallel(
            "many",
            [Request(f"c{i}", "fast") for i in range(3)],
            trace_children="detached",
        ),
    )
    await executor(provider).run(flow)
    assert provider.force_flush(5_000)
    spans = decode(receiver[1])
    many = spans["parallel many"].span
    assert many.parent_span_id == spans["flow fanout"].span.span_id
    child_traces = set()
    for i in range(3):
        child = spans[f"request c{i}"].span
        assert child.parent_span_id == b""
        assert child.trace_id != many.trace_id
        child_traces.add(child.trace_id)
        (link,) = child.links
        assert (link.trace_id, link.span_id) == (many.trace_id, many.span_id)
        assert child.status.code == PbStatus.STATUS_CODE_UNSET
    assert len(child_traces) == 3
    assert spans["parallel many"].attributes["stepwatch.parallel.trace_children"] == "detached"


def _load_example() -> Any:
    path = Path(__file__).parents[2] / "examples" / "jaeger" / "run_flow.py"
    spec = importlib.util.spec_from_file_location("jaeger_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_jaeger_example_through_otlp_tracer_provider(
    receiver: tuple[str, Received], capsys: pytest.CaptureFixture[str]
) -> None:
    """The examples/jaeger script, via otlp_tracer_provider, delivers both traces."""
    example = _load_example()
    endpoint, received = receiver
    provider = otlp_tracer_provider("jaeger-example", endpoint=endpoint, timeout=5)
    try:
        trace_ids = await example.main(provider)
    finally:
        provider.shutdown()
    spans = decode(received)
    assert {d.service for d in spans.values()} == {"jaeger-example"}
    enrich = spans["parallel enrich"]
    assert enrich.span.trace_id.hex() == trace_ids[0]
    assert enrich.attributes["error.type"] == "timeout"
    assert spans["request recommendations"].attributes["stepwatch.cancel.cause"] == "deadline"
    reviews = spans["request reviews"].span
    assert [e.name for e in reviews.events] == ["stepwatch.near_timeout"]
    notify = spans["parallel notify"].span
    assert notify.trace_id.hex() == trace_ids[1]
    for child in ("email", "sms", "push"):
        (link,) = spans[f"request {child}"].span.links
        assert link.span_id == notify.span_id
    assert "still pending: recommendations" in capsys.readouterr().out


def test_otlp_tracer_provider_names_the_extra_when_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the exporter installed the ImportError says how to install it."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ImportError, match=r"pip install 'stepwatch\[otlp\]'"):
        otlp_tracer_provider("x")
