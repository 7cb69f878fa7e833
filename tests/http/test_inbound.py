"""DeadlineMiddleware under real ASGI servers (uvicorn on asyncio, hypercorn on trio)."""

from __future__ import annotations

import math
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry

from stepwatch import CancelCause, Flow, FlowExecutor, Request, Status, ValidationError
from stepwatch.http import DeadlineMiddleware, InboundBudget
from stepwatch.testing import OutcomeRecorder, sleeping
from tests.helpers import memory_tracer, sample

from .apps import Probe
from .servers import http_client, running

pytestmark = pytest.mark.anyio

HOSTILE = ["-5", "nan", "inf", "1e9", "garbage", "0x10", "5 0", "١٢٣", "9" * 40, "", "+1"]


async def _get(url: str, **headers: str) -> httpx.Response:
    async with http_client() as client:
        return await client.get(url, headers=headers)


class TestBudgetReachesTheApplication:
    """The application runs under the caller's budget, visible to anyio."""

    @pytest.mark.parametrize(
        ("headers", "budget"),
        [
            ({"grpc-timeout": "300m"}, 0.3),
            ({"x-request-timeout-ms": "450"}, 0.45),
            ({"grpc-timeout": "2S", "x-request-timeout-ms": "350"}, 0.35),
        ],
        ids=["grpc-timeout", "milliseconds", "smallest-of-both"],
    )
    async def test_header_sets_the_deadline(
        self, backend: str, registry: CollectorRegistry, headers: dict[str, str], budget: float
    ) -> None:
        """The app sees about the budget the header sent, never more."""
        probe = Probe()
        app = DeadlineMiddleware(probe, InboundBudget(default=5), registry=registry)
        async with running(app, backend) as url:
            response = await _get(url, **headers)
        assert response.status_code == 200
        assert budget - 0.15 < probe.time_left[0] <= budget
        assert sample(registry, "stepwatch_inbound_requests_total", source="header") == 1

    async def test_default_applies_without_header(
        self, backend: str, registry: CollectorRegistry
    ) -> None:
        """No budget header: the configured default; without a default: no deadline."""
        with_default, without = Probe(), Probe()
        a = DeadlineMiddleware(with_default, InboundBudget(default=0.4), registry=registry)
        b = DeadlineMiddleware(without, registry=registry)
        async with running(a, backend) as url_a, running(b, backend) as url_b:
            await _get(url_a)
            await _get(url_b)
        assert 0.25 < with_default.time_left[0] <= 0.4
        assert math.isinf(without.time_left[0])
        assert sample(registry, "stepwatch_inbound_requests_total", source="default") == 1
        assert sample(registry, "stepwatch_inbound_requests_total", source="none") == 1

    async def test_max_budget_caps_what_the_caller_asks(self, backend: str) -> None:
        """A caller asking for 99999999 hours gets max_budget."""
        probe = Probe()
        app = DeadlineMiddleware(probe, InboundBudget(max_budget=0.5), metrics=False)
        async with running(app, backend) as url:
            await _get(url, **{"grpc-timeout": "99999999H"})
        assert 0.35 < probe.time_left[0] <= 0.5


class TestSpentOnArrival:
    """A request whose budget is spent is answered at once; the app is never called."""

    async def test_504_without_calling_the_app(
        self, backend: str, registry: CollectorRegistry
    ) -> None:
        """Status 504, a plain-text reason, zero application calls, each rejection counted."""
        spent = [
            {"grpc-timeout": "0m"},
            {"grpc-timeout": "0n"},
            {"x-request-timeout-ms": "0"},
            {"x-request-timeout-ms": "0.000", "grpc-timeout": "5S"},
            {"grpc-timeout": "1n"},
        ]
        probe = Probe()
        app = DeadlineMiddleware(probe, InboundBudget(default=5), registry=registry)
        async with running(app, backend) as url:
            for headers in spent:
                response = await _get(url, **headers)
                assert response.status_code == 504, headers
                assert "deadline exceeded" in response.text
        assert probe.calls == 0
        assert sample(registry, "stepwatch_inbound_rejected_total", reason="spent") == len(spent)


class TestHostileHeaders:
    """Hostile budget values never crash, never extend the deadline."""

    async def test_ignored_values_fall_back_to_the_default(
        self, backend: str, registry: CollectorRegistry
    ) -> None:
        """By default an unusable value is ignored: the default applies, not 'no deadline'."""
        probe = Probe()
        app = DeadlineMiddleware(probe, InboundBudget(default=0.3), registry=registry)
        async with running(app, backend) as url, http_client() as client:
            for value in HOSTILE:
                raw = value.encode()  # UTF-8 bytes on the wire for the non-ASCII ones
                headers = [("grpc-timeout", raw), ("x-request-timeout-ms", raw)]
                response = await client.get(url, headers=headers)
                assert response.status_code == 200, value
                assert 0.15 < probe.time_left[-1] <= 0.3, value
        assert probe.calls == len(HOSTILE)
        counted = sample(registry, "stepwatch_inbound_requests_total", source="invalid")
        assert counted == len(HOSTILE)

    async def test_reject_mode_answers_400(self, backend: str, registry: CollectorRegistry) -> None:
        """With on_invalid='reject' an unusable value is a 400 and the app is not called."""
        probe = Probe()
        config = InboundBudget(default=1, on_invalid="reject")
        app = DeadlineMiddleware(probe, config, registry=registry)
        async with running(app, backend) as url:
            bad = await _get(url, **{"x-request-timeout-ms": "-1"})
            good = await _get(url, **{"x-request-timeout-ms": "500"})
        assert (bad.status_code, good.status_code) == (400, 200)
        assert probe.calls == 1
        assert sample(registry, "stepwatch_inbound_rejected_total", reason="invalid") == 1

    async def test_huge_and_repeated_headers(self, backend: str) -> None:
        """An 8 KB junk value and 60 repeated budget headers: the smallest valid one wins."""
        probe = Probe()
        app = DeadlineMiddleware(probe, InboundBudget(default=5), metrics=False)
        headers = [("grpc-timeout", "7" * 8000)]
        headers += [("x-request-timeout-ms", f"{900 + i}") for i in range(30)]
        headers += [("grpc-timeout", f"{i}Z") for i in range(30)]
        async with running(app, backend) as url, http_client() as client:
            response = await client.get(url, headers=headers)
        assert response.status_code == 200
        assert 0.75 < probe.time_left[0] <= 0.9


class TestExpiry:
    """What happens when the budget runs out while the application works."""

    async def test_before_the_response_gives_504(
        self, backend: str, registry: CollectorRegistry
    ) -> None:
        """The app is cancelled at the deadline and the caller gets 504 right then."""
        probe = Probe(work=10)
        app = DeadlineMiddleware(probe, registry=registry)
        async with running(app, backend) as url:
            with anyio.fail_after(5):
                response = await _get(url, **{"grpc-timeout": "200m"})
        assert response.status_code == 504
        assert (probe.calls, probe.cancelled, probe.finished) == (1, 1, 0)
        labels = {"phase": "before_response"}
        assert sample(registry, "stepwatch_inbound_expired_total", **labels) == 1

    async def test_mid_response_breaks_the_connection(
        self, backend: str, registry: CollectorRegistry
    ) -> None:
        """A started response is left incomplete: the client sees an error, not a success."""
        probe = Probe(work=10, stream=True)
        app = DeadlineMiddleware(probe, registry=registry)
        async with running(app, backend) as url:
            with anyio.fail_after(5), pytest.raises(httpx.RemoteProtocolError):
                await _get(url, **{"grpc-timeout": "200m"})
        assert (probe.cancelled, probe.finished) == (1, 0)
        labels = {"phase": "during_response"}
        assert sample(registry, "stepwatch_inbound_expired_total", **labels) == 1

    async def test_work_after_a_complete_response_is_not_cut(self, backend: str) -> None:
        """Once the response is complete the deadline is lifted (background work runs on)."""
        done = anyio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await Probe()(scope, receive, send)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            await anyio.sleep(0.3)  # past the 100 ms budget
            done.set()
            return None

        async with running(DeadlineMiddleware(app, metrics=False), backend) as url:
            response = await _get(url, **{"grpc-timeout": "100m"})
            with anyio.fail_after(5):
                await done.wait()
        assert response.status_code == 200

    @pytest.mark.parametrize(
        ("final", "complete"),
        [
            ({"type": "http.response.pathsend", "path": "/etc/hostname"}, True),
            ({"type": "http.response.zerocopysend", "file": 0}, True),
            ({"type": "http.response.zerocopysend", "file": 0, "more_body": True}, False),
        ],
        ids=["pathsend", "zerocopysend", "zerocopysend-more-body"],
    )
    async def test_a_response_sent_from_a_file_is_complete(
        self, registry: CollectorRegistry, final: dict[str, Any], complete: bool
    ) -> None:
        """The pathsend and zerocopysend extensions' last message completes the response:
        the deadline is lifted and nothing is counted as expired."""
        state: dict[str, str] = {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send(final)
            try:
                await anyio.sleep(0.1)  # past the 50 ms budget, e.g. a background task
                state["after"] = "finished"
            except anyio.get_cancelled_exc_class():
                state["after"] = "cancelled"
                raise

        async def receive() -> Any:
            await anyio.sleep_forever()

        async def send(message: Any) -> None:
            pass

        extensions = {"http.response.pathsend": {}, "http.response.zerocopysend": {}}
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/file",
            "headers": [(b"grpc-timeout", b"50m")],
            "extensions": extensions,
        }
        with anyio.fail_after(5):
            await DeadlineMiddleware(app, registry=registry)(scope, receive, send)
        assert state["after"] == ("finished" if complete else "cancelled")
        expired = sample(registry, "stepwatch_inbound_expired_total", phase="during_response")
        assert expired == (0 if complete else 1)

    @pytest.mark.parametrize("trailers_first", [True, False], ids=["sent", "still-to-send"])
    async def test_a_response_with_trailers_ends_with_its_last_trailers(
        self, registry: CollectorRegistry, trailers_first: bool
    ) -> None:
        """With trailers announced (the trailers extension), the response is complete at its
        last trailers message, not at its last body message: until then the deadline holds."""
        state: dict[str, str] = {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "trailers": True})
            await send({"type": "http.response.body", "body": b"x", "more_body": False})
            if trailers_first:
                await send({"type": "http.response.trailers", "headers": []})
            try:
                await anyio.sleep(0.1)  # past the 50 ms budget
                state["after"] = "finished"
            except anyio.get_cancelled_exc_class():
                state["after"] = "cancelled"
                raise
            await send({"type": "http.response.trailers", "headers": []})

        async def receive() -> Any:
            await anyio.sleep_forever()

        async def send(message: Any) -> None:
            pass

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/stream",
            "headers": [(b"grpc-timeout", b"50m")],
            "extensions": {"http.response.trailers": {}},
        }
        with anyio.fail_after(5):
            await DeadlineMiddleware(app, registry=registry)(scope, receive, send)
        assert state["after"] == ("finished" if trailers_first else "cancelled")
        expired = sample(registry, "stepwatch_inbound_expired_total", phase="during_response")
        assert expired == (0 if trailers_first else 1)

    async def test_stepwatch_steps_inside_are_cut_with_cause_outside(self, backend: str) -> None:
        """A flow run by the app is clamped by the inbound deadline: cause outside, 504."""
        recorder = OutcomeRecorder()
        executor = FlowExecutor(
            handlers={"slow": sleeping(10)}, hooks=[recorder], tracing=False, metrics=False
        )
        flow = Flow("inner", [Request("slow", "slow", timeout=30)])

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await Probe()(scope, receive, send)
            await executor.run(flow)
            return None

        async with running(DeadlineMiddleware(app, metrics=False), backend) as url:
            with anyio.fail_after(5):
                response = await _get(url, **{"x-request-timeout-ms": "150"})
        assert response.status_code == 504
        outcome = recorder["slow"]
        assert (outcome.status, outcome.cause) == (Status.CANCELLED, CancelCause.OUTSIDE)
        assert 0.1 < outcome.elapsed < 1.0


class TestDefinition:
    """Bad arguments are ValidationErrors naming the field."""

    @pytest.mark.parametrize(
        ("args", "field"),
        [((None,), "DeadlineMiddleware.app"), ((Probe(), 5.0), "DeadlineMiddleware.budget")],
    )
    def test_bad_arguments(self, args: tuple[Any, ...], field: str) -> None:
        """An app that is not callable, a budget that is not an InboundBudget."""
        with pytest.raises(ValidationError) as info:
            DeadlineMiddleware(*args, metrics=False)
        assert info.value.field == field


class TestTelemetry:
    """Span attributes, trace continuation and pass-through of other scopes."""

    async def test_budget_attributes_on_the_server_span(self, backend: str) -> None:
        """With the OpenTelemetry ASGI middleware outside, its span gets the budget."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        provider, exporter = memory_tracer()
        inner = DeadlineMiddleware(Probe(), InboundBudget(default=1), metrics=False)
        app = OpenTelemetryMiddleware(inner, tracer_provider=provider)
        async with running(app, backend) as url:
            await _get(url, **{"grpc-timeout": "250m"})
            await _get(url, **{"grpc-timeout": "0m"})
        servers = [s for s in exporter.get_finished_spans() if s.parent is None]
        assert len(servers) == 2
        ok, spent = sorted(servers, key=lambda s: s.attributes.get("http.status_code", 0))  # type: ignore[union-attr]
        assert ok.attributes["stepwatch.deadline.inbound_budget"] == 0.25  # type: ignore[index]
        assert ok.attributes["stepwatch.deadline.source"] == "header"  # type: ignore[index]
        assert "stepwatch.deadline.rejected" not in ok.attributes  # type: ignore[operator]
        assert spent.attributes["stepwatch.deadline.rejected"] == "spent"  # type: ignore[index]
        assert spent.attributes["stepwatch.deadline.inbound_budget"] == 0.0  # type: ignore[index]

    async def test_caller_trace_continues_without_the_asgi_instrumentation(
        self, backend: str
    ) -> None:
        """Without a server span, the caller's traceparent becomes the flow span's parent."""
        provider, exporter = memory_tracer()
        executor = FlowExecutor(
            handlers={"fast": sleeping(0)}, tracer_provider=provider, metrics=False
        )
        flow = Flow("inner", [Request("fast", "fast")])

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await Probe()(scope, receive, send)
            await executor.run(flow)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return None

        trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        traceparent = f"00-{trace_id}-{parent_id}-01"
        async with running(DeadlineMiddleware(app, metrics=False), backend) as url:
            await _get(url, traceparent=traceparent)
            await _get(url)
        roots = [s for s in exporter.get_finished_spans() if s.name == "flow inner"]
        assert len(roots) == 2
        continued, fresh = roots
        assert f"{continued.context.trace_id:032x}" == trace_id  # type: ignore[union-attr]
        assert f"{continued.parent.span_id:016x}" == parent_id  # type: ignore[union-attr]
        assert continued.parent.is_remote  # type: ignore[union-attr]
        assert fresh.parent is None and fresh.context.trace_id != continued.context.trace_id  # type: ignore[union-attr]

    async def test_telemetry_failures_never_reach_a_request(
        self, backend: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A registry that refuses the metrics, metrics and spans that raise: same answers."""
        from stepwatch.http import _telemetry

        class Refusing(CollectorRegistry):
            def register(self, collector: Any) -> None:
                raise ValueError("refused")

        class Broken:
            def labels(self, *args: Any) -> Any:
                raise RuntimeError("broken metric")

            def observe(self, value: float) -> None:
                raise RuntimeError("broken metric")

        def broken_span() -> Any:
            raise RuntimeError("broken tracing")

        refused = DeadlineMiddleware(Probe(), InboundBudget(default=1), registry=Refusing())
        assert refused._metrics is None
        broken = DeadlineMiddleware(Probe(), InboundBudget(default=1), registry=CollectorRegistry())
        assert broken._metrics is not None
        for name in ("inbound_requests", "inbound_rejected", "inbound_budget"):
            setattr(broken._metrics, name, Broken())
        monkeypatch.setattr(_telemetry.trace, "get_current_span", broken_span)
        async with running(refused, backend) as url_a, running(broken, backend) as url_b:
            for url in (url_a, url_b):
                assert (await _get(url, **{"grpc-timeout": "300m"})).status_code == 200
                assert (await _get(url, **{"grpc-timeout": "0m"})).status_code == 504

    async def test_lifespan_passes_through(self, backend: str) -> None:
        """Non-HTTP scopes reach the application untouched (its lifespan runs)."""
        seen: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["type"])
            await Probe()(scope, receive, send)

        async with running(DeadlineMiddleware(app, metrics=False), backend) as url:
            await _get(url)
        assert seen[0] == "lifespan" and "http" in seen
