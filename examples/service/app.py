"""stepwatch example service: a checkout page that fans out to backends per request.

An ASGI application, served by uvicorn. Every ``GET /checkout?sku=A-1&slow=0.3`` runs the
flow ``checkout`` (whole-flow deadline 800 ms) under the caller's time budget::

    parse (transform)
    → enrich (parallel, 250 ms group deadline, on_timeout="partial")
        ├─ inventory        async, fast, own timeout 100 ms, fallback
        ├─ pricing          JSON-RPC call to pricing.quote, own timeout 100 ms, fallback price
        ├─ reviews          async, no own timeout: the group deadline cuts it
        └─ recommendations  sync (blocking, runs in a worker thread)
    → shipping (parallel, min_successes=1: the first of two carrier quotes wins)
    → tax (request, own timeout 200 ms)
    → fraud (request, no own timeout: only the flow deadline bounds it)
    → render (transform)

Deadlines across services (``stepwatch.http``):

* ``/checkout`` runs inside ``DeadlineMiddleware``: the caller's budget comes in the
  ``x-request-timeout-ms`` or ``grpc-timeout`` header (2 s when absent, at most 10 s); the
  run is cancelled from outside when it expires (cut-off steps have cause ``outside``;
  HTTP 504). A request whose budget is already spent on arrival is answered 504 at once,
  the flow never runs.
* pricing is a JSON-RPC 2.0 service (``POST /rpc``, method ``pricing.quote``, served by
  ``JsonRpcApp``). In the example this process serves it too (one command, one scrape
  target), but the flow calls it over HTTP through ``JsonRpcClient`` like any remote
  service: each call carries the time left minus a 10 ms margin, so the backend stops
  at the caller's deadline, and a call with no more than the margin left is not sent
  (the pricing step fails; the fail-fast group cancels its siblings; HTTP 502).

Query parameters choose what goes wrong on this request, each a probability 0..1:

* ``slow`` (default 0.2): each of pricing, reviews and recommendations is slow: pricing
  hits its own timeout (the backend is stopped by the budget it got), reviews is
  cancelled at the group deadline, recommendations is abandoned as a still-running
  worker thread.
* ``fail``: reviews raises; the fail-fast group cancels its siblings (``sibling_failure``)
  and the request fails (HTTP 502).
* ``stuck``: recommendations blocks for 12 s, so abandoned threads pile up.
* ``late``: fraud takes 2 s, so the whole-flow deadline expires (``FlowTimeoutError``,
  HTTP 504).
* ``tight``: tax uses 80–88 % of its budget (close to its deadline, not over it).
* ``block``: inventory holds the event loop for 120 ms inside ``async def`` (past its
  100 ms timeout): an overrun, named on its span and in
  ``stepwatch_step_overrun_seconds_total``; its fallback is used.

``GET /metrics`` serves the registry in the OpenMetrics format (the format that carries
exemplars); ``GET /runbook`` serves ``docs/runbook.md`` as a page whose sections are the
anchors the alerts' ``runbook_url`` point to; ``GET /healthz`` answers ``ok``.

Run (needs ``pip install 'stepwatch[http]' uvicorn``)::

    python examples/service/app.py --port 8000            # http://127.0.0.1:8000/checkout
    curl -H 'x-request-timeout-ms: 150' 'http://127.0.0.1:8000/checkout?slow=0.5'
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 python examples/service/app.py

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (and ``stepwatch[otlp]`` installed), spans go to
that OTLP/HTTP endpoint (Jaeger ≥ 1.35 accepts it); otherwise spans are recorded but not
exported, which is enough for the ``trace_id`` exemplars on the latency histograms. With
``opentelemetry-instrumentation-asgi`` installed, ``/checkout`` and ``/rpc`` also get HTTP
server spans, which carry the ``stepwatch.deadline.*`` attributes of each request.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import time
from collections.abc import MutableMapping
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx
import structlog
import uvicorn
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest

from stepwatch import (
    Flow,
    FlowExecutor,
    FlowTimeoutError,
    Parallel,
    Request,
    StepContext,
    StepTimeoutError,
    StepwatchError,
    Transform,
)
from stepwatch.http import (
    DeadlineMiddleware,
    InboundBudget,
    JsonRpcApp,
    JsonRpcClient,
    OutboundBudget,
)

__all__ = [
    "CHECKOUT_BUDGET",
    "FLOW_NAME",
    "KNOBS",
    "PRICING_BUDGET",
    "PRICING_MARGIN",
    "Service",
    "build_executor",
    "build_flow",
    "main",
    "runbook_html",
]

FLOW_NAME = "checkout"
FLOW_DEADLINE = 0.8  # seconds for the whole run
GROUP_DEADLINE = 0.25  # seconds for the whole fan-out
CHILD_TIMEOUT = 0.1  # own budget of inventory and pricing
TAX_TIMEOUT = 0.2  # own budget of tax
STUCK_SECONDS = 12.0  # how long a stuck recommendations call blocks its thread
KNOBS = ("slow", "fail", "stuck", "late", "tight", "block")
"""Query parameters that are probabilities (0..1) of what goes wrong on a request."""
CHECKOUT_BUDGET = InboundBudget(default=2.0, max_budget=10.0)
"""How /checkout reads the caller's budget: 2 s without a budget header, at most 10 s."""
PRICING_BUDGET = InboundBudget(default=1.0, max_budget=2.0)
"""How the pricing backend (/rpc) reads its callers' budget."""
PRICING_MARGIN = 0.01
"""Seconds the checkout keeps back when calling pricing (the network, the reply's way)."""
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def _chance(params: dict[str, Any], knob: str) -> bool:
    return random.random() < float(params.get(knob, 0.0))


def _slow(params: dict[str, Any]) -> bool:
    return _chance(params, "slow")


async def inventory(params: dict[str, Any]) -> dict[str, Any]:
    """Fast backend, well within its 100 ms, unless ``block``: then it rebuilds a cache
    with blocking code inside ``async def``, holding the event loop past its deadline.
    stepwatch cannot interrupt that, but names it (an overrun) and uses the fallback."""
    await anyio.sleep(random.uniform(0.005, 0.02))
    if _chance(params, "block"):
        time.sleep(0.12)  # the misbehaviour being shown: every request waits meanwhile
    return {"sku": params["sku"], "in_stock": random.randint(0, 20)}


async def pricing_quote(**params: Any) -> dict[str, Any]:
    """``pricing.quote``, the JSON-RPC backend: usually fast; when slow it would take
    longer than the 100 ms the checkout's pricing step allows. The call brings that
    deadline along (``JsonRpcApp`` runs the method under it), so the backend stops at
    the caller's deadline instead of working on for nobody."""
    await anyio.sleep(random.uniform(0.15, 0.3) if _slow(params) else random.uniform(0.01, 0.04))
    return {"sku": params["sku"], "price": "19.90 EUR"}


async def reviews(params: dict[str, Any]) -> dict[str, Any]:
    """No own timeout: when slow, the parallel group deadline cancels it; may fail."""
    await anyio.sleep(random.uniform(0.005, 0.02))
    if _chance(params, "fail"):
        raise ConnectionError("reviews backend reset the connection")
    await anyio.sleep(1.0 if _slow(params) else random.uniform(0.01, 0.06))
    return {"sku": params["sku"], "stars": 4.6}


def recommendations(params: dict[str, Any]) -> list[str]:
    """Blocking (sync) code in a worker thread: when slow or stuck it is abandoned at the
    deadline and keeps its thread busy (stuck: for 12 s)."""
    if _chance(params, "stuck"):
        time.sleep(STUCK_SECONDS)
    else:
        time.sleep(0.8 if _slow(params) else random.uniform(0.03, 0.06))
    return ["B-7", "C-2"]


async def carrier(params: dict[str, Any]) -> dict[str, Any]:
    """A shipping quote: the first of the two carriers to answer wins (quorum of one)."""
    await anyio.sleep(random.uniform(0.01, 0.05))
    return {"carrier": "any", "days": random.randint(1, 4)}


async def tax(params: dict[str, Any]) -> dict[str, Any]:
    """Usually quick; when ``tight`` it uses 80-88 % of its 200 ms budget."""
    share = random.uniform(0.8, 0.88) if _chance(params, "tight") else random.uniform(0.05, 0.2)
    await anyio.sleep(share * TAX_TIMEOUT)
    return {"vat": "19 %"}


async def fraud(params: dict[str, Any]) -> dict[str, bool]:
    """No own timeout: when ``late`` it outlasts the whole-flow deadline."""
    await anyio.sleep(2.0 if _chance(params, "late") else random.uniform(0.005, 0.02))
    return {"ok": True}


LOCAL_HANDLERS = {
    "inventory": inventory,
    "reviews": reviews,
    "recommendations": recommendations,
    "carrier": carrier,
    "tax": tax,
    "fraud": fraud,
}
"""The handlers that run in this process; pricing is called over JSON-RPC."""
BACKENDS = ("inventory", "pricing", "reviews", "recommendations")


def _backend_params(ctx: StepContext) -> dict[str, Any]:
    return dict(ctx.results["parse"])


def _parse(ctx: StepContext) -> dict[str, Any]:
    query: dict[str, Any] = ctx.input
    parsed: dict[str, Any] = {"sku": str(query.get("sku", "A-1"))}
    for knob in KNOBS:
        parsed[knob] = min(max(float(query.get(knob, 0.0)), 0.0), 1.0)
    return parsed


def _render(ctx: StepContext) -> dict[str, Any]:
    parts: dict[str, Any] = dict(ctx.results["enrich"])
    missing = sorted(set(BACKENDS) - set(parts))
    if parts.get("pricing", {}).get("price") is None:
        missing.append("pricing (fallback)")
    parts["shipping"] = next(iter(ctx.results["shipping"].values()))
    return {"sku": ctx.results["parse"]["sku"], "parts": parts, "degraded": missing}


def build_flow() -> Flow:
    """The ``checkout`` flow: parse → fan-out to four backends → hedged shipping quote →
    tax → fraud check → render, under an 800 ms whole-flow deadline."""
    return Flow(
        FLOW_NAME,
        [
            Transform("parse", _parse, inline=True),
            Parallel(
                "enrich",
                [
                    Request(
                        "inventory",
                        "inventory",
                        _backend_params,
                        timeout=CHILD_TIMEOUT,
                        fallback={"in_stock": None},
                    ),
                    Request(
                        "pricing",
                        "pricing.quote",
                        _backend_params,
                        timeout=CHILD_TIMEOUT,
                        fallback={"price": None},
                    ),
                    Request("reviews", "reviews", _backend_params),
                    Request("recommendations", "recommendations", _backend_params),
                ],
                timeout=GROUP_DEADLINE,
                on_timeout="partial",
            ),
            Parallel(
                "shipping",
                [
                    Request("carrier-a", "carrier", _backend_params),
                    Request("carrier-b", "carrier", _backend_params),
                ],
                min_successes=1,
            ),
            Request("tax", "tax", _backend_params, timeout=TAX_TIMEOUT),
            Request("fraud", "fraud", _backend_params),
            Transform("render", _render, inline=True),
        ],
        timeout=FLOW_DEADLINE,
    )


def build_executor(
    pricing: JsonRpcClient,
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
) -> FlowExecutor:
    """A :class:`FlowExecutor` with the local backends and ``pricing.quote`` called through
    ``pricing``; metrics on ``registry``."""
    return FlowExecutor(
        handlers={**LOCAL_HANDLERS, **pricing.handlers("pricing.quote")},
        registry=registry,
        tracer_provider=tracer_provider,
        metrics=True,
    )


Scope = MutableMapping[str, Any]


async def _send(send: Any, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _server_spans(app: Any, tracer_provider: Any) -> Any:
    """``app`` inside the OpenTelemetry ASGI middleware (an HTTP server span per request,
    on which stepwatch.http records the budget, ``stepwatch.deadline.*``), when tracing
    is on and the instrumentation is installed; else ``app`` itself."""
    if tracer_provider is None:
        return app
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError:
        return app
    try:  # no internal span per ASGI message (an option of recent versions)
        return OpenTelemetryMiddleware(
            app, tracer_provider=tracer_provider, exclude_spans=["receive", "send"]
        )
    except TypeError:
        return OpenTelemetryMiddleware(app, tracer_provider=tracer_provider)


class Service:
    """The ASGI application: ``/checkout`` (under :class:`DeadlineMiddleware`), ``/rpc``
    (the pricing backend, a :class:`JsonRpcApp`), ``/metrics``, ``/runbook``, ``/healthz``.

    ``base_url`` is where this service can reach itself (the pricing client calls
    ``<base_url>/rpc``); every metric goes to ``registry``.
    """

    def __init__(
        self,
        base_url: str,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        # the loopback call must not go through a proxy from the environment
        self.http = httpx.AsyncClient(trust_env=False)
        self.pricing = JsonRpcClient(
            f"{base_url.rstrip('/')}/rpc",
            self.http,
            budget=OutboundBudget(margin=PRICING_MARGIN),
            target="pricing",
            registry=self.registry,
        )
        self.executor = build_executor(self.pricing, self.registry, tracer_provider)
        self.flow = build_flow()
        checkout = DeadlineMiddleware(self._checkout, CHECKOUT_BUDGET, registry=self.registry)
        rpc = JsonRpcApp(
            {"pricing.quote": pricing_quote}, budget=PRICING_BUDGET, registry=self.registry
        )
        self.routes = {
            "/checkout": _server_spans(checkout, tracer_provider),
            "/rpc": _server_spans(rpc, tracer_provider),
        }

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Route one ASGI connection scope."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here
        path = scope["path"]
        route = self.routes.get(path)
        if route is not None:
            await route(scope, receive, send)
        elif path == "/metrics":
            await _send(send, HTTPStatus.OK, self.metrics(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            await _send(send, HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/runbook":
            page = runbook_html().encode()
            await _send(send, HTTPStatus.OK, page, "text/html; charset=utf-8")
        else:
            await _send(send, HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.http.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _checkout(self, scope: Scope, receive: Any, send: Any) -> None:
        raw = bytes(scope.get("query_string", b"")).decode("latin-1")
        query = {k: v[-1] for k, v in parse_qs(raw).items()}
        params: dict[str, Any] = {"sku": query.get("sku", "A-1"), "slow": 0.2}
        try:
            for knob in KNOBS:
                if knob in query:
                    params[knob] = float(query[knob])
        except ValueError:
            message = f"{', '.join(KNOBS)} must be numbers\n"
            await _send(send, HTTPStatus.BAD_REQUEST, message.encode(), "text/plain")
            return
        status, body = await self.checkout(params)
        await _send(send, status, json.dumps(body).encode() + b"\n", "application/json")

    async def checkout(self, query: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Run the flow once with the request's query parameters; returns (HTTP status,
        JSON body). The caller's deadline (``DeadlineMiddleware``'s) cancels it from
        outside: that cancellation passes through, and the middleware answers 504."""
        try:
            result = await self.executor.run(self.flow, query)
        except StepwatchError as exc:  # a deadline → 504, a failed backend → 502
            timed_out = isinstance(exc, StepTimeoutError | FlowTimeoutError)
            status = HTTPStatus.GATEWAY_TIMEOUT if timed_out else HTTPStatus.BAD_GATEWAY
            return status, {"error": type(exc).__name__, "detail": str(exc)}
        body: dict[str, Any] = result["render"]
        body["outcomes"] = {name: o.status.value for name, o in result.outcomes.items()}
        return HTTPStatus.OK, body

    def metrics(self) -> bytes:
        """The registry in the OpenMetrics text format (with exemplars)."""
        body: bytes = generate_latest(self.registry)  # type: ignore[no-untyped-call]
        return body


def _anchor(heading: str) -> str:
    """The GitHub-style anchor of a markdown heading (what runbook_url links to)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_html(path: Path = RUNBOOK) -> str:
    """``docs/runbook.md`` as a plain HTML page: every heading carries its anchor as ``id``,
    so the alerts' ``runbook_url`` (``.../runbook#<alert name in lower case>``) lands on the
    alert's section. The rest is shown as written."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^(#{1,6})\s+(.+?)\s*$", line)
        if heading:
            level, text = len(heading.group(1)), heading.group(2)
            lines.append(f'<h{level} id="{_anchor(text)}">{html.escape(text)}</h{level}>')
        else:
            lines.append(html.escape(line))
    body = "\n".join(lines)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>stepwatch alerts runbook</title></head>"
        '<body style="max-width:52em;margin:auto;font-family:sans-serif;white-space:pre-wrap">'
        f"{body}</body></html>\n"
    )


def _tracer_provider() -> Any:
    """An SDK TracerProvider (OTLP/HTTP export if OTEL_EXPORTER_OTLP_ENDPOINT is set)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        print("opentelemetry-sdk not installed: no tracing (pip install -e '.[otlp]')")
        return None
    service_name = os.environ.get("OTEL_SERVICE_NAME", "stepwatch-example")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    args = parser.parse_args(argv)

    # An application (not the library) decides what to log: warnings and up, as JSON lines.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    provider = _tracer_provider()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)  # connections queue until uvicorn accepts them
    port = sock.getsockname()[1]
    own_host = "127.0.0.1" if args.host in ("", "0.0.0.0") else args.host
    service = Service(f"http://{own_host}:{port}", tracer_provider=provider)
    config = uvicorn.Config(
        service, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    # uvicorn re-raises the signal it stopped on: make SIGTERM (docker stop, kill) end like
    # Ctrl-C, so the last spans are still sent
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"listening on http://{args.host}:{port}", flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])  # until SIGTERM / Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        if provider is not None:
            provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
