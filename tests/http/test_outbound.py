"""DeadlineTransport: the time left travels with each httpx request, or nothing is sent."""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry

from stepwatch import (
    Flow,
    FlowExecutor,
    Request,
    Retry,
    StepFailedError,
    StepTimeoutError,
    ValidationError,
)
from stepwatch.http import (
    BudgetExhaustedError,
    DeadlineMiddleware,
    DeadlineTransport,
    InboundBudget,
    OutboundBudget,
)
from stepwatch.http._budget import parse_grpc_timeout, parse_ms
from stepwatch.http._telemetry import MAX_TARGETS, HttpMetrics
from tests.helpers import memory_tracer, sample

from .apps import Probe
from .servers import running

pytestmark = pytest.mark.anyio


def _client(**kwargs: Any) -> httpx.AsyncClient:
    timeout = kwargs.pop("timeout", 10)
    transport = DeadlineTransport(httpx.AsyncHTTPTransport(verify=False), **kwargs)
    return httpx.AsyncClient(transport=transport, timeout=timeout)


class _Capture(httpx.AsyncBaseTransport):
    """Records each request and answers 200 without any network."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={})


def _sent_budgets(headers: dict[str, str]) -> tuple[float | None, float | None]:
    return parse_grpc_timeout(headers["grpc-timeout"]), parse_ms(headers["x-request-timeout-ms"])


def _ids(traceparent: str) -> tuple[int, int]:
    """(trace id, parent span id) of a W3C traceparent value."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


class TestBudgetHeaders:
    """Inside a deadline, each request carries the time left minus the margin."""

    async def test_time_left_minus_margin_reaches_the_server(
        self, backend: str, registry: CollectorRegistry
    ) -> None:
        """Both headers say ≤ time left − margin; the server runs under that budget."""
        probe = Probe()
        server = DeadlineMiddleware(probe, metrics=False)
        async with running(server, backend) as url, _client(registry=registry) as client:
            with anyio.fail_after(0.5):
                await client.get(url)
        grpc, ms = _sent_budgets(probe.headers[0])
        assert grpc is not None and ms is not None
        for sent in (grpc, ms):
            assert 0.49 - 0.2 < sent <= 0.49  # default margin: 10 ms
        assert 0 < probe.time_left[0] <= min(grpc, ms)
        assert sample(registry, "stepwatch_outbound_requests_total", target="default") == 1
        count = sample(registry, "stepwatch_outbound_budget_seconds_count", target="default")
        assert count == 1

    @pytest.mark.parametrize("margin", [0.0, 0.15, 0.3])
    async def test_margin_is_kept_back(self, margin: float) -> None:
        """A larger margin sends a smaller budget, by exactly the margin's difference."""
        capture = _Capture()
        transport = DeadlineTransport(capture, budget=OutboundBudget(margin=margin), metrics=False)
        async with httpx.AsyncClient(transport=transport) as client:
            with anyio.CancelScope(deadline=anyio.current_time() + 0.5):
                before = anyio.current_effective_deadline() - anyio.current_time()
                await client.get("http://backend.invalid/")
        sent = parse_ms(capture.requests[0].headers["x-request-timeout-ms"])
        assert sent is not None
        assert before - margin - 0.1 < sent <= before - margin

    async def test_no_deadline_no_budget_headers(self) -> None:
        """Outside any deadline nothing is added but the trace context (when a span is on)."""
        capture = _Capture()
        async with httpx.AsyncClient(transport=DeadlineTransport(capture, metrics=False)) as c:
            await c.get("http://backend.invalid/")
        headers = capture.requests[0].headers
        assert "grpc-timeout" not in headers and "x-request-timeout-ms" not in headers
        assert capture.requests[0].extensions["timeout"]["read"] == 5.0  # httpx default

    async def test_a_smaller_budget_already_set_is_kept(self) -> None:
        """A header the caller set with less time is kept; a larger one is replaced."""
        capture = _Capture()
        async with httpx.AsyncClient(transport=DeadlineTransport(capture, metrics=False)) as c:
            with anyio.fail_after(1):
                small = {"grpc-timeout": "50m", "x-request-timeout-ms": "60"}
                await c.get("http://backend.invalid/", headers=small)
                await c.get("http://backend.invalid/", headers={"grpc-timeout": "1H"})
        kept, replaced = (r.headers for r in capture.requests)
        assert (kept["grpc-timeout"], kept["x-request-timeout-ms"]) == ("50m", "60")
        grpc = parse_grpc_timeout(replaced["grpc-timeout"])
        assert grpc is not None and grpc <= 1.0

    async def test_header_names_are_configurable(self) -> None:
        """Custom names are sent; a name set to None is not."""
        capture = _Capture()
        budget = OutboundBudget(grpc_header=None, ms_header="x-envoy-expected-rq-timeout-ms")
        transport = DeadlineTransport(capture, budget=budget, metrics=False)
        async with httpx.AsyncClient(transport=transport) as client:
            with anyio.fail_after(1):
                await client.get("http://backend.invalid/")
        headers = capture.requests[0].headers
        assert "grpc-timeout" not in headers and "x-request-timeout-ms" not in headers
        sent = parse_ms(headers["x-envoy-expected-rq-timeout-ms"])
        assert sent is not None and 0.5 < sent <= 0.99


class TestNotSent:
    """When no time is left beyond the margin, nothing goes out."""

    async def test_within_the_margin_raises_and_sends_nothing(
        self, backend: str, registry: CollectorRegistry
    ) -> None:
        """A retryable BudgetExhaustedError (an httpx timeout); the server sees nothing."""
        probe = Probe()
        budget = OutboundBudget(margin=0.1)
        async with (
            running(probe, backend) as url,
            _client(budget=budget, target="pricing", registry=registry) as client,
        ):
            with anyio.fail_after(0.05), pytest.raises(BudgetExhaustedError) as info:
                await client.get(url)
        assert probe.calls == 0
        error = info.value
        assert isinstance(error, httpx.TimeoutException) and error.retryable is True
        assert 0 < error.time_left <= 0.05 and error.margin == 0.1
        assert "not sent" in str(error)
        assert sample(registry, "stepwatch_outbound_not_sent_total", target="pricing") == 1
        assert sample(registry, "stepwatch_outbound_requests_total", target="pricing") == 1

    async def test_expired_or_cancelled_callers_send_nothing(
        self, backend: str, registry: CollectorRegistry
    ) -> None:
        """An already expired deadline or an already cancelled caller (anyio's effective
        deadline -inf) gets its own cancellation and nothing is sent, also through a
        transport that never checkpoints; a deadline within the margin is
        BudgetExhaustedError, counted, nothing sent."""
        probe, capture = Probe(), _Capture()
        no_checkpoint = DeadlineTransport(capture, target="capture", registry=registry)
        async with (
            running(probe, backend) as url,
            _client(target="server", registry=registry) as client,
            httpx.AsyncClient(transport=no_checkpoint) as direct,
        ):
            for http, target in ((client, url), (direct, "http://backend.invalid/")):
                with anyio.CancelScope(deadline=anyio.current_time() - 1) as expired:
                    await http.get(target)
                assert expired.cancelled_caught
                with anyio.CancelScope() as cancelled:
                    cancelled.cancel()
                    assert anyio.current_effective_deadline() == -math.inf
                    await http.get(target)
                assert cancelled.cancelled_caught
                with anyio.CancelScope(deadline=anyio.current_time() + 0.001):
                    with pytest.raises(BudgetExhaustedError):
                        await http.get(target)
        assert probe.calls == 0 and capture.requests == []
        for target in ("server", "capture"):
            assert sample(registry, "stepwatch_outbound_requests_total", target=target) == 1
            assert sample(registry, "stepwatch_outbound_not_sent_total", target=target) == 1

    async def test_a_step_without_time_fails_fast_without_retrying(self) -> None:
        """In a flow: StepFailedError caused by BudgetExhaustedError, no retry past the end."""
        capture = _Capture()
        client = httpx.AsyncClient(
            transport=DeadlineTransport(capture, budget=OutboundBudget(margin=0.5), metrics=False)
        )

        async def call(params: Any) -> Any:
            return (await client.get("http://backend.invalid/")).json()

        executor = FlowExecutor(handlers={"call": call}, tracing=False, metrics=False)
        flow = Flow("f", [Request("call", "call", timeout=0.2, retry=Retry(attempts=3))])
        async with client:
            with pytest.raises(StepFailedError) as info:
                await executor.run(flow)
        assert isinstance(info.value.__cause__, BudgetExhaustedError)
        assert info.value.retryable is True
        assert capture.requests == []


class TestTimeoutsCapped:
    """httpx's own timeouts never outlast the deadline; the deadline's owner reports it."""

    @pytest.mark.parametrize(("client_timeout", "capped"), [(5.0, True), (0.05, False)])
    async def test_each_timeout_is_capped_by_the_time_left(
        self, client_timeout: float, capped: bool
    ) -> None:
        """connect/read/write/pool become min(httpx timeout, time left)."""
        capture = _Capture()
        transport = DeadlineTransport(capture, metrics=False)
        async with httpx.AsyncClient(transport=transport, timeout=client_timeout) as client:
            with anyio.fail_after(0.3):
                await client.get("http://backend.invalid/")
        timeouts = capture.requests[0].extensions["timeout"]
        assert set(timeouts) == {"connect", "read", "write", "pool"}
        for value in timeouts.values():
            assert (0.1 < value <= 0.3) if capped else value == client_timeout

    async def test_slow_server_is_a_step_timeout_not_an_httpx_error(self, backend: str) -> None:
        """The server gives up first (504) and httpx's read timeout is capped to the time
        left, yet the step reports its own timeout."""
        probe = Probe(work=10)
        server = DeadlineMiddleware(probe, metrics=False)  # the server gives up too
        async with running(server, backend) as url, _client(metrics=False) as client:

            async def call(params: Any) -> Any:
                return (await client.get(url)).raise_for_status().json()

            executor = FlowExecutor(handlers={"call": call}, tracing=False, metrics=False)
            flow = Flow("f", [Request("call", "call", timeout=0.15)])
            for _ in range(4):  # the httpx timer and the deadline expire together
                with anyio.fail_after(5), pytest.raises(StepTimeoutError) as info:
                    await executor.run(flow)
                assert info.value.step_name == "call"

    async def test_capped_httpx_timer_and_deadline_expire_together(self, backend: str) -> None:
        """Against a server that ignores budgets, httpx's capped read timeout fires with the
        step's deadline; the step still reports its own timeout, every time."""
        probe = Probe(work=0.5)  # no middleware: answers only after 500 ms
        async with running(probe, backend) as url, _client(metrics=False) as client:

            async def call(params: Any) -> Any:
                return (await client.get(url)).json()

            executor = FlowExecutor(handlers={"call": call}, tracing=False, metrics=False)
            flow = Flow("f", [Request("call", "call", timeout=0.1)])
            for _ in range(4):
                with anyio.fail_after(5), pytest.raises(StepTimeoutError):
                    await executor.run(flow)
        assert probe.calls == 4  # each attempt was sent, and cut at the deadline

    async def test_an_httpx_timeout_raised_after_the_deadline_is_the_deadlines(self) -> None:
        """A transport whose timer fires late (blocked loop, other backend) still lets the
        step report its own timeout instead of the httpx error."""

        class LateTimeout(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.25)  # past the step's deadline, cancellation held
                raise httpx.ReadTimeout("timed out", request=request)

        client = httpx.AsyncClient(transport=DeadlineTransport(LateTimeout(), metrics=False))

        async def call(params: Any) -> Any:
            return (await client.get("http://backend.invalid/")).json()

        executor = FlowExecutor(handlers={"call": call}, tracing=False, metrics=False)
        async with client:
            with pytest.raises(StepTimeoutError):
                await executor.run(Flow("f", [Request("call", "call", timeout=0.1)]))

    async def test_a_shorter_httpx_timeout_still_applies(self, backend: str) -> None:
        """httpx's own 50 ms read timeout fires first and is reported as itself."""
        probe = Probe(work=0.3)
        server = DeadlineMiddleware(probe, metrics=False)
        async with running(server, backend) as url, _client(metrics=False, timeout=0.05) as client:

            async def call(params: Any) -> Any:
                return (await client.get(url)).json()

            executor = FlowExecutor(handlers={"call": call}, tracing=False, metrics=False)
            with pytest.raises(StepFailedError) as info:
                await executor.run(Flow("f", [Request("call", "call", timeout=1)]))
        assert isinstance(info.value.__cause__, httpx.ReadTimeout)


class TestRemoteDeadline:
    """A 504 from a server that capped the budget is not mistaken for our own deadline."""

    async def test_a_504_well_before_our_deadline_returns_at_once(self, backend: str) -> None:
        """The server's max_budget (100 ms) expires long before ours (3 s): 504 now."""
        probe = Probe(work=10)
        server = DeadlineMiddleware(probe, InboundBudget(max_budget=0.1), metrics=False)
        async with running(server, backend) as url, _client(metrics=False) as client:
            with anyio.fail_after(3):
                started = anyio.current_time()
                response = await client.get(url)
                elapsed = anyio.current_time() - started
        assert response.status_code == 504
        assert elapsed < 1.0


class TestTracePropagation:
    """The trace context travels with the request, composed with the contrib instrumentation."""

    async def test_current_span_is_injected(self) -> None:
        """The current span becomes the traceparent's parent; propagate_trace=False: none."""
        provider, _ = memory_tracer()
        capture = _Capture()
        off = DeadlineTransport(capture, budget=OutboundBudget(propagate_trace=False))
        async with (
            httpx.AsyncClient(transport=DeadlineTransport(capture, metrics=False)) as on_client,
            httpx.AsyncClient(transport=off) as off_client,
        ):
            with provider.get_tracer("t").start_as_current_span("step") as span:
                await on_client.get("http://backend.invalid/")
                await off_client.get("http://backend.invalid/")
        ids = span.get_span_context()
        on, off_request = capture.requests
        assert _ids(on.headers["traceparent"]) == (ids.trace_id, ids.span_id)
        assert "traceparent" not in off_request.headers

    async def test_a_callers_baggage_or_tracestate_alone_is_no_trace_context(self) -> None:
        """With only baggage or tracestate set, traceparent is injected and the caller's
        field is kept as given; with a traceparent set, nothing is injected."""
        from opentelemetry import baggage, context, trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

        ours = SpanContext(
            0x4BF92F3577B34DA6A3CE929D0E0E4736,
            0x00F067AA0BA902B7,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("ours", "1")]),
        )
        theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        capture = _Capture()
        token = context.attach(baggage.set_baggage("user", "u1"))
        try:
            async with httpx.AsyncClient(transport=DeadlineTransport(capture, metrics=False)) as c:
                with trace.use_span(NonRecordingSpan(ours)), anyio.fail_after(1):
                    for headers in (
                        {},
                        {"baggage": "tenant=acme"},
                        {"tracestate": "vendor=1"},
                        {"traceparent": theirs},
                    ):
                        await c.get("http://backend.invalid/", headers=headers)
        finally:
            context.detach(token)
        sent = [
            {k: r.headers.get(k) for k in ("traceparent", "tracestate", "baggage")}
            for r in capture.requests
        ]
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        assert sent == [
            {"traceparent": traceparent, "tracestate": "ours=1", "baggage": "user=u1"},
            {"traceparent": traceparent, "tracestate": "ours=1", "baggage": "tenant=acme"},
            {"traceparent": traceparent, "tracestate": "vendor=1", "baggage": "user=u1"},
            {"traceparent": theirs, "tracestate": None, "baggage": None},
        ]

    @pytest.mark.parametrize("order", ["deadline-outside", "otel-outside"])
    async def test_composes_with_the_httpx_instrumentation(self, order: str) -> None:
        """Either nesting order: one traceparent, naming the instrumentation's client span."""
        from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

        provider, exporter = memory_tracer()
        capture = _Capture()
        if order == "deadline-outside":
            inner = AsyncOpenTelemetryTransport(capture, tracer_provider=provider)
            transport: httpx.AsyncBaseTransport = DeadlineTransport(inner, metrics=False)
        else:
            transport = AsyncOpenTelemetryTransport(
                DeadlineTransport(capture, metrics=False), tracer_provider=provider
            )
        async with httpx.AsyncClient(transport=transport) as client:
            with provider.get_tracer("t").start_as_current_span("step"), anyio.fail_after(1):
                await client.get("http://backend.invalid/")
        spans = {s.name: s for s in exporter.get_finished_spans()}
        client_span = spans["GET"]
        assert client_span.parent is not None
        assert client_span.parent.span_id == spans["step"].context.span_id  # type: ignore[union-attr]
        sent = capture.requests[0].headers
        (traceparent,) = sent.get_list("traceparent")
        context = client_span.context
        assert context is not None
        assert _ids(traceparent) == (context.trace_id, context.span_id)
        assert "x-request-timeout-ms" in sent

    async def test_time_left_is_an_attribute_of_the_current_span(self) -> None:
        """The span current at send time gets stepwatch.deadline.time_left and budget_sent."""
        provider, exporter = memory_tracer()
        transport = DeadlineTransport(_Capture(), budget=OutboundBudget(margin=0.1))
        async with httpx.AsyncClient(transport=transport) as client:
            with provider.get_tracer("t").start_as_current_span("step"), anyio.fail_after(1):
                await client.get("http://backend.invalid/")
        (span,) = exporter.get_finished_spans()
        attributes = span.attributes or {}
        left, sent = (
            attributes["stepwatch.deadline.time_left"],
            attributes["stepwatch.deadline.budget_sent"],
        )
        assert isinstance(left, float) and isinstance(sent, float)
        assert 0.8 < left <= 1.0 and sent == pytest.approx(left - 0.1)


class TestConfiguration:
    """Bad arguments are ValidationErrors; the target label is bounded."""

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"budget": InboundBudget()}, "DeadlineTransport.budget"),
            ({"target": ""}, "DeadlineTransport.target"),
            ({"target": "x" * 101}, "DeadlineTransport.target"),
            ({"target": 7}, "DeadlineTransport.target"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, Any], field: str) -> None:
        """Each names its field and the value."""
        with pytest.raises(ValidationError) as info:
            DeadlineTransport(_Capture(), **kwargs)
        assert info.value.field == field
        assert info.value.value == next(iter(kwargs.values()))

    def test_target_that_utf8_cannot_encode_is_rejected(self) -> None:
        """A target with a lone surrogate (it would break every scrape) is a ValidationError."""
        target = json.loads('"pricing\\ud800"')
        with pytest.raises(ValidationError, match=r"encodes as UTF-8.*'pricing\\ud800'") as info:
            DeadlineTransport(_Capture(), target=target)
        assert (info.value.field, info.value.value) == ("DeadlineTransport.target", target)
        assert DeadlineTransport(_Capture(), target="café").target == "café"

    def test_target_label_values_are_bounded(self, registry: CollectorRegistry) -> None:
        """Beyond MAX_TARGETS distinct targets, new ones are recorded as _other."""
        metrics = HttpMetrics(registry)
        names = [metrics.target(f"t{i}") for i in range(MAX_TARGETS + 5)]
        assert names[:MAX_TARGETS] == [f"t{i}" for i in range(MAX_TARGETS)]
        assert set(names[MAX_TARGETS:]) == {"_other"}
        assert metrics.target("t0") == "t0"
