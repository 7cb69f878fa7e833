"""Three services over JSON-RPC on real servers: the budget shrinks hop by hop, work stops
downstream when the edge's deadline expires, and one trace spans every service.

    edge (test) ──▶ gateway ──┬──▶ inventory
                              └──▶ pricing ──▶ fx
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stepwatch import (
    CancelCause,
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Status,
    StepTimeoutError,
)
from stepwatch.http import JsonRpcApp, JsonRpcClient, OutboundBudget
from stepwatch.testing import OutcomeRecorder
from tests.helpers import memory_tracer

from .servers import running

pytestmark = pytest.mark.anyio

MARGIN = 0.01
BOUND = 0.1
"""Documented bound: downstream work ends at most this long after the edge's deadline."""


@dataclass
class Service:
    """One service: what it saw, and its telemetry."""

    name: str
    work: float = 0.0
    time_left: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)
    cancelled: list[float] = field(default_factory=list)
    recorder: OutcomeRecorder = field(default_factory=OutcomeRecorder)
    exporter: InMemorySpanExporter = field(init=False)
    provider: TracerProvider = field(init=False)

    def __post_init__(self) -> None:
        self.provider, self.exporter = memory_tracer(Resource.create({"service.name": self.name}))

    async def tracked(self, fn: Callable[[], Any]) -> Any:
        """Run this service's work, noting when it finished or was cut off."""
        self.time_left.append(anyio.current_effective_deadline() - anyio.current_time())
        try:
            await anyio.sleep(self.work)
            value = await fn()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(anyio.current_time())
            raise
        self.finished.append(anyio.current_time())
        return value


@dataclass
class System:
    gateway: Service
    inventory: Service
    pricing: Service
    fx: Service
    url: str

    def services(self) -> list[Service]:
        return [self.gateway, self.inventory, self.pricing, self.fx]


@asynccontextmanager
async def system(
    backend: str,
    *,
    work: dict[str, float],
    instrumented: bool = False,
    propagate: bool = True,
) -> AsyncIterator[System]:
    """Start the four services on 127.0.0.1; yield them with the gateway's URL."""
    s = {
        name: Service(name, work.get(name, 0.0))
        for name in ("gateway", "inventory", "pricing", "fx")
    }
    budget = OutboundBudget(margin=MARGIN, propagate_trace=propagate)

    def app(service: Service, methods: dict[str, Any]) -> Any:
        endpoint = JsonRpcApp(methods, metrics=False)
        if not instrumented:
            return endpoint
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        return OpenTelemetryMiddleware(endpoint, tracer_provider=service.provider)

    def http(service: Service) -> httpx.AsyncClient:
        transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(verify=False)
        if instrumented:
            from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

            transport = AsyncOpenTelemetryTransport(transport, tracer_provider=service.provider)
        return httpx.AsyncClient(transport=transport)

    def executor(service: Service, handlers: dict[str, Any]) -> FlowExecutor:
        return FlowExecutor(
            handlers=handlers,
            hooks=[service.recorder],
            tracer_provider=service.provider,
            metrics=False,
        )

    async with AsyncExitStack() as stack:

        async def fx_rate(currency: str) -> float:
            return await s["fx"].tracked(lambda: _value(1.1))

        async def stock(sku: str) -> int:
            return await s["inventory"].tracked(lambda: _value(7))

        fx_url = await stack.enter_async_context(
            running(app(s["fx"], {"fx.rate": fx_rate}), backend)
        )
        inv_url = await stack.enter_async_context(
            running(app(s["inventory"], {"inventory.stock": stock}), backend)
        )

        pricing_http = await stack.enter_async_context(http(s["pricing"]))
        fx = JsonRpcClient(fx_url, pricing_http, budget=budget, metrics=False)
        pricing_flow = Flow("pricing", [Request("rate", "fx.rate", {"currency": "EUR"})])
        pricing_executor = executor(s["pricing"], fx.handlers("fx.rate"))

        async def quote(sku: str) -> float:
            async def run() -> float:
                result = await pricing_executor.run(pricing_flow)
                return 10.0 * float(result["rate"])

            return float(await s["pricing"].tracked(run))

        pricing_url = await stack.enter_async_context(
            running(app(s["pricing"], {"pricing.quote": quote}), backend)
        )

        gateway_http = await stack.enter_async_context(http(s["gateway"]))
        handlers = {
            **JsonRpcClient(inv_url, gateway_http, budget=budget, metrics=False).handlers(
                "inventory.stock"
            ),
            **JsonRpcClient(pricing_url, gateway_http, budget=budget, metrics=False).handlers(
                "pricing.quote"
            ),
        }
        page_flow = Flow(
            "page",
            [
                Parallel(
                    "enrich",
                    [
                        Request("stock", "inventory.stock", {"sku": "A-1"}),
                        Request("price", "pricing.quote", {"sku": "A-1"}),
                    ],
                )
            ],
        )
        gateway_executor = executor(s["gateway"], handlers)

        async def render(sku: str) -> dict[str, Any]:
            async def run() -> dict[str, Any]:
                result = await gateway_executor.run(page_flow)
                return dict(result["enrich"])

            return dict(await s["gateway"].tracked(run))

        gateway_url = await stack.enter_async_context(
            running(app(s["gateway"], {"page.render": render}), backend)
        )
        yield System(s["gateway"], s["inventory"], s["pricing"], s["fx"], gateway_url)


async def _value(value: Any) -> Any:
    return value


async def _edge_call(
    url: str, timeout: float, provider: TracerProvider | None = None, instrumented: bool = False
) -> Any:
    """What a caller at the edge does: a flow whose one step calls the gateway."""
    transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(verify=False)
    if instrumented:
        from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

        transport = AsyncOpenTelemetryTransport(transport, tracer_provider=provider)
    async with httpx.AsyncClient(transport=transport) as http:
        client = JsonRpcClient(url, http, budget=OutboundBudget(margin=MARGIN), metrics=False)
        executor = FlowExecutor(
            handlers=client.handlers("page.render"),
            tracer_provider=provider,
            tracing=provider is not None,
            metrics=False,
        )
        flow = Flow("edge", [Request("page", "page.render", {"sku": "A-1"}, timeout=timeout)])
        return await executor.run(flow)


class TestBudgetPropagation:
    """The edge's budget reaches every service, smaller at each hop by the time spent."""

    async def test_budget_shrinks_hop_by_hop(self, backend: str) -> None:
        """Each hop sees what its caller had left minus the margin and the caller's work."""
        work = {"gateway": 0.05, "pricing": 0.05}
        async with system(backend, work=work) as s:
            result = await _edge_call(s.url, timeout=1.0)
        assert result["page"] == {"stock": 7, "price": 11.0}
        (gateway,), (inventory,), (pricing,), (fx,) = (x.time_left for x in s.services())
        assert 1.0 - MARGIN - 0.2 < gateway <= 1.0 - MARGIN
        for downstream in (inventory, pricing):
            assert downstream <= gateway - 0.05 - MARGIN  # the gateway's own work came first
            assert downstream > gateway - 0.05 - MARGIN - 0.2
        assert pricing - 0.05 - MARGIN - 0.2 < fx <= pricing - 0.05 - MARGIN


class TestDownstreamStops:
    """When the edge's deadline expires, no service keeps working for it."""

    async def test_no_work_finishes_after_the_edges_deadline(self, backend: str) -> None:
        """Every service's work is cut off no later than BOUND after the edge's deadline;
        the edge reports its own step timeout; cut-off steps inside say cause outside."""
        work = {"inventory": 10.0, "fx": 10.0}
        async with system(backend, work=work) as s:
            started = anyio.current_time()
            with anyio.fail_after(5), pytest.raises(StepTimeoutError) as info:
                await _edge_call(s.url, timeout=0.3)
            deadline = started + 0.3
            assert info.value.step_name == "page"
            assert anyio.current_time() - deadline < 0.2
        for service in (s.inventory, s.fx, s.pricing, s.gateway):
            assert service.finished == [], service.name
            assert len(service.cancelled) == 1, service.name
            assert service.cancelled[0] <= deadline + BOUND, service.name
        # the leaves stop first: their deadlines are the edge's minus the margins on the way
        assert s.fx.cancelled[0] < s.pricing.cancelled[0] + 1e-3
        assert s.inventory.cancelled[0] < s.gateway.cancelled[0] + 1e-3
        for service, step in ((s.pricing, "rate"), (s.gateway, "enrich")):
            outcome = service.recorder[step]
            assert (outcome.status, outcome.cause) == (Status.CANCELLED, CancelCause.OUTSIDE)


def _spans(s: System) -> list[ReadableSpan]:
    return [span for x in s.services() for span in x.exporter.get_finished_spans()]


class TestOneTrace:
    """The trace context travels with every call: one trace across all services."""

    @pytest.mark.parametrize("instrumented", [False, True], ids=["stepwatch-only", "with-contrib"])
    async def test_one_trace_across_four_services(self, backend: str, instrumented: bool) -> None:
        """Every span of every service has the edge's trace id, and each service's first
        span is a child of a span of its caller."""
        edge, edge_exporter = memory_tracer(Resource.create({"service.name": "edge"}))
        async with system(backend, work={}, instrumented=instrumented) as s:
            await _edge_call(s.url, timeout=2.0, provider=edge, instrumented=instrumented)
        edge_spans = list(edge_exporter.get_finished_spans())
        spans = edge_spans + _spans(s)
        trace_ids = {span.context.trace_id for span in spans}  # type: ignore[union-attr]
        assert len(trace_ids) == 1
        by_id = {span.context.span_id: span for span in spans}  # type: ignore[union-attr]
        callers = {"gateway": "edge", "inventory": "gateway", "pricing": "gateway", "fx": "pricing"}
        flows = {"gateway": "flow page", "pricing": "flow pricing"}
        traced = s.services() if instrumented else [s.gateway, s.pricing]  # the others run no flow
        for service in traced:
            own = list(service.exporter.get_finished_spans())
            own_ids = {span.context.span_id for span in own}  # type: ignore[union-attr]
            entries = [
                span for span in own if span.parent is None or span.parent.span_id not in own_ids
            ]
            assert len(entries) == 1, service.name
            (entry,) = entries
            assert entry.parent is not None and entry.parent.is_remote
            parent = by_id[entry.parent.span_id]
            assert parent.resource.attributes["service.name"] == callers[service.name]
            if instrumented:  # the contrib server span, child of the caller's client span
                assert entry.kind.name == "SERVER" and parent.kind.name == "CLIENT"
            else:  # stepwatch's flow span, child of the caller's request step span
                assert entry.name == flows[service.name] and parent.name.startswith("request ")
            assert service.name not in flows or flows[service.name] in {x.name for x in own}

    async def test_without_propagation_the_traces_split(self, backend: str) -> None:
        """Control: with propagate_trace=False the downstream services start new traces."""
        edge = TracerProvider()
        async with system(backend, work={}, propagate=False) as s:
            await _edge_call(s.url, timeout=2.0, provider=edge)
        pricing = {span.context.trace_id for span in s.pricing.exporter.get_finished_spans()}  # type: ignore[union-attr]
        fx_spans = list(s.fx.exporter.get_finished_spans())
        assert fx_spans == []  # fx runs no flow: nothing continues a trace there
        gateway = {span.context.trace_id for span in s.gateway.exporter.get_finished_spans()}  # type: ignore[union-attr]
        assert len(gateway) == 1 and len(pricing) == 1 and gateway != pricing
