"""stepwatch example service: a checkout page that fans out to four backends per request.

Every ``GET /checkout?sku=A-1&slow=0.3`` runs the flow ``checkout``::

    parse (transform) → enrich (parallel, 250 ms group deadline, on_timeout="partial")
                           ├─ inventory        async, fast, own timeout 100 ms (now
                           │                   and then it blocks the loop: an overrun)
                           ├─ pricing          async, own timeout 100 ms, fallback price
                           ├─ reviews          async, no own timeout: the group deadline cuts it
                           └─ recommendations  sync (blocking, runs in a worker thread)
                      → render (transform)

``slow`` (0..1, default 0.2) is the probability that each of pricing, reviews and
recommendations is slow on this request, so a load with ``slow > 0`` makes part of the
children time out (pricing: own timeout), be cancelled at the group deadline (reviews)
or be abandoned as a still-running worker thread (recommendations). The page still
renders, marked ``degraded``.

``GET /metrics`` serves the registry in the OpenMetrics format (the format that carries
exemplars); ``GET /healthz`` answers ``ok``.

Run::

    python examples/service/app.py --port 8000            # http://127.0.0.1:8000/checkout
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 python examples/service/app.py

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (and ``stepwatch[otlp]`` installed), spans go to
that OTLP/HTTP endpoint (Jaeger ≥ 1.35 accepts it); otherwise spans are recorded but not
exported, which is enough for the ``trace_id`` exemplars on the latency histogram.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import structlog
from anyio.from_thread import BlockingPortal, start_blocking_portal
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest

from stepwatch import (
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    StepContext,
    StepwatchError,
    Transform,
)

__all__ = ["FLOW_NAME", "Service", "build_executor", "build_flow", "main", "serve"]

FLOW_NAME = "checkout"
GROUP_DEADLINE = 0.25  # seconds for the whole fan-out
CHILD_TIMEOUT = 0.1  # own budget of inventory and pricing


def _slow(params: dict[str, Any]) -> bool:
    return random.random() < float(params.get("slow", 0.0))


async def inventory(params: dict[str, Any]) -> dict[str, Any]:
    """Fast backend, well within its 100 ms, except that now and then (a quarter of the
    ``slow`` share) it rebuilds a cache with blocking code inside ``async def``: it holds
    the event loop past its deadline, and stepwatch names it (overrun), never a success."""
    await anyio.sleep(random.uniform(0.005, 0.02))
    if random.random() < float(params.get("slow", 0.0)) / 4:
        time.sleep(0.12)  # the misbehaviour being shown: blocks every request meanwhile
    return {"sku": params["sku"], "in_stock": random.randint(0, 20)}


async def pricing(params: dict[str, Any]) -> dict[str, Any]:
    """Usually fast; when slow it overruns its own 100 ms timeout (fallback price used)."""
    await anyio.sleep(random.uniform(0.15, 0.3) if _slow(params) else random.uniform(0.01, 0.04))
    return {"sku": params["sku"], "price": "19.90 EUR"}


async def reviews(params: dict[str, Any]) -> dict[str, Any]:
    """No own timeout: when slow, the parallel group deadline cancels it."""
    await anyio.sleep(1.0 if _slow(params) else random.uniform(0.02, 0.08))
    return {"sku": params["sku"], "stars": 4.6}


def recommendations(params: dict[str, Any]) -> list[str]:
    """Blocking (sync) code in a worker thread: when slow it is abandoned at the deadline."""
    time.sleep(0.8 if _slow(params) else random.uniform(0.03, 0.06))
    return ["B-7", "C-2"]


HANDLERS = {
    "inventory": inventory,
    "pricing": pricing,
    "reviews": reviews,
    "recommendations": recommendations,
}


def _backend_params(ctx: StepContext) -> dict[str, Any]:
    return dict(ctx.results["parse"])


def _parse(ctx: StepContext) -> dict[str, Any]:
    query: dict[str, Any] = ctx.input
    return {"sku": str(query.get("sku", "A-1")), "slow": min(max(float(query["slow"]), 0), 1)}


def _render(ctx: StepContext) -> dict[str, Any]:
    parts: dict[str, Any] = dict(ctx.results["enrich"])
    missing = sorted(set(HANDLERS) - set(parts))
    if parts.get("pricing", {}).get("price") is None:
        missing.append("pricing (fallback)")
    return {"sku": ctx.results["parse"]["sku"], "parts": parts, "degraded": missing}


def build_flow() -> Flow:
    """The ``checkout`` flow: parse → parallel fan-out to four backends → render."""
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
                        "pricing",
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
            Transform("render", _render, inline=True),
        ],
    )


def build_executor(
    registry: CollectorRegistry | None = None, tracer_provider: Any = None
) -> FlowExecutor:
    """A :class:`FlowExecutor` with the four backends, metrics on ``registry``."""
    return FlowExecutor(
        handlers=HANDLERS, registry=registry, tracer_provider=tracer_provider, metrics=True
    )


class Service:
    """The HTTP server, the event loop thread that runs the flows, and the registry."""

    def __init__(
        self,
        portal: BlockingPortal,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: CollectorRegistry | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.executor = build_executor(self.registry, tracer_provider)
        self.flow = build_flow()
        self.portal = portal
        self.httpd = ThreadingHTTPServer((host, port), _handler_class(self))
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8000``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def checkout(self, sku: str, slow: float) -> tuple[int, dict[str, Any]]:
        """Run the flow once (from any thread); returns (HTTP status, JSON body)."""
        try:
            result = self.portal.call(self.executor.run, self.flow, {"sku": sku, "slow": slow})
        except StepwatchError as exc:
            return HTTPStatus.GATEWAY_TIMEOUT, {"error": type(exc).__name__, "detail": str(exc)}
        body: dict[str, Any] = result["render"]
        body["outcomes"] = {name: o.status.value for name, o in result.outcomes.items()}
        return HTTPStatus.OK, body

    def metrics(self) -> bytes:
        """The registry in the OpenMetrics text format (with exemplars)."""
        body: bytes = generate_latest(self.registry)  # type: ignore[no-untyped-call]
        return body


def _handler_class(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if url.path == "/metrics":
                self._send(HTTPStatus.OK, service.metrics(), CONTENT_TYPE_LATEST)
            elif url.path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
            elif url.path == "/checkout":
                try:
                    slow = float(query.get("slow", "0.2"))
                except ValueError:
                    self._send(HTTPStatus.BAD_REQUEST, b"slow must be a number\n", "text/plain")
                    return
                status, body = service.checkout(query.get("sku", "A-1"), slow)
                self._send(status, json.dumps(body).encode() + b"\n", "application/json")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet access log
            pass

    return Handler


@contextlib.contextmanager
def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
) -> Iterator[Service]:
    """Start the service (HTTP server thread + event loop thread); stop it on exit."""
    with start_blocking_portal() as portal:
        service = Service(portal, host, port, registry, tracer_provider)
        thread = threading.Thread(target=service.httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield service
        finally:
            service.httpd.shutdown()
            service.httpd.server_close()
            thread.join()


def _tracer_provider() -> Any:
    """An SDK TracerProvider (OTLP/HTTP export if OTEL_EXPORTER_OTLP_ENDPOINT is set)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        print("opentelemetry-sdk not installed: no tracing (pip install 'stepwatch[otlp]')")
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
    signal.signal(signal.SIGTERM, _interrupt)  # docker stop / kill: shut down cleanly
    with serve(args.host, args.port, tracer_provider=provider) as service:
        print(f"listening on {service.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    if provider is not None:
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
