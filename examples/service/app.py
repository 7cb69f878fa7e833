"""stepwatch example service: a checkout page that fans out to backends per request.

Every ``GET /checkout?sku=A-1&slow=0.3`` runs the flow ``checkout`` (whole-flow deadline
800 ms)::

    parse (transform)
    → enrich (parallel, 250 ms group deadline, on_timeout="partial")
        ├─ inventory        async, fast, own timeout 100 ms, fallback
        ├─ pricing          async, own timeout 100 ms, fallback price
        ├─ reviews          async, no own timeout: the group deadline cuts it
        └─ recommendations  sync (blocking, runs in a worker thread)
    → shipping (parallel, min_successes=1: the first of two carrier quotes wins)
    → tax (request, own timeout 200 ms)
    → fraud (request, no own timeout: only the flow deadline bounds it)
    → render (transform)

Query parameters choose what goes wrong on this request, each a probability 0..1:

* ``slow`` (default 0.2): each of pricing, reviews and recommendations is slow: pricing
  hits its own timeout, reviews is cancelled at the group deadline, recommendations is
  abandoned as a still-running worker thread.
* ``fail``: reviews raises; the fail-fast group cancels its siblings (``sibling_failure``)
  and the request fails (HTTP 502).
* ``stuck``: recommendations blocks for 12 s, so abandoned threads pile up.
* ``late``: fraud takes 2 s, so the whole-flow deadline expires (``FlowTimeoutError``,
  HTTP 504).
* ``tight``: tax uses 80–88 % of its budget (close to its deadline, not over it).
* ``block``: inventory holds the event loop for 120 ms inside ``async def`` (past its
  100 ms timeout): an overrun, named on its span and in
  ``stepwatch_step_overrun_seconds_total``; its fallback is used.

and ``budget`` (seconds) is the caller's deadline: the run is cancelled from outside when
it expires (cut-off steps have cause ``outside``; HTTP 504).

``GET /metrics`` serves the registry in the OpenMetrics format (the format that carries
exemplars); ``GET /runbook`` serves ``docs/runbook.md`` as a page whose sections are the
anchors the alerts' ``runbook_url`` point to; ``GET /healthz`` answers ``ok``.

Run::

    python examples/service/app.py --port 8000            # http://127.0.0.1:8000/checkout
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 python examples/service/app.py

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (and ``stepwatch[otlp]`` installed), spans go to
that OTLP/HTTP endpoint (Jaeger ≥ 1.35 accepts it); otherwise spans are recorded but not
exported, which is enough for the ``trace_id`` exemplars on the latency histograms.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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
    FlowTimeoutError,
    Parallel,
    Request,
    StepContext,
    StepTimeoutError,
    StepwatchError,
    Transform,
)

__all__ = [
    "FLOW_NAME",
    "KNOBS",
    "Service",
    "build_executor",
    "build_flow",
    "main",
    "runbook_html",
    "serve",
]

FLOW_NAME = "checkout"
FLOW_DEADLINE = 0.8  # seconds for the whole run
GROUP_DEADLINE = 0.25  # seconds for the whole fan-out
CHILD_TIMEOUT = 0.1  # own budget of inventory and pricing
TAX_TIMEOUT = 0.2  # own budget of tax
STUCK_SECONDS = 12.0  # how long a stuck recommendations call blocks its thread
KNOBS = ("slow", "fail", "stuck", "late", "tight", "block")
"""Query parameters that are probabilities (0..1) of what goes wrong on a request."""
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


async def pricing(params: dict[str, Any]) -> dict[str, Any]:
    """Usually fast; when slow it overruns its own 100 ms timeout (fallback price used)."""
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


HANDLERS = {
    "inventory": inventory,
    "pricing": pricing,
    "reviews": reviews,
    "recommendations": recommendations,
    "carrier": carrier,
    "tax": tax,
    "fraud": fraud,
}
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
    registry: CollectorRegistry | None = None, tracer_provider: Any = None
) -> FlowExecutor:
    """A :class:`FlowExecutor` with the backends, metrics on ``registry``."""
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

    async def _run(self, query: dict[str, Any], budget: float | None) -> Any:
        if budget is None:
            return await self.executor.run(self.flow, query)
        with anyio.fail_after(budget):  # the caller's deadline: cancels the run from outside
            return await self.executor.run(self.flow, query)

    def checkout(
        self, query: dict[str, Any], budget: float | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Run the flow once (from any thread) with the request's query parameters and the
        caller's deadline ``budget`` (s); returns (HTTP status, JSON body)."""
        try:
            result = self.portal.call(self._run, query, budget)
        except StepwatchError as exc:  # a deadline → 504, a failed backend → 502
            timed_out = isinstance(exc, StepTimeoutError | FlowTimeoutError)
            status = HTTPStatus.GATEWAY_TIMEOUT if timed_out else HTTPStatus.BAD_GATEWAY
            return status, {"error": type(exc).__name__, "detail": str(exc)}
        except TimeoutError:  # from fail_after(): the caller's deadline, not ours
            return HTTPStatus.GATEWAY_TIMEOUT, {"error": "caller deadline", "budget": budget}
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
            elif url.path == "/runbook":
                self._send(HTTPStatus.OK, runbook_html().encode(), "text/html; charset=utf-8")
            elif url.path == "/checkout":
                params: dict[str, Any] = {"sku": query.get("sku", "A-1"), "slow": 0.2}
                try:
                    for knob in KNOBS:
                        if knob in query:
                            params[knob] = float(query[knob])
                    budget = float(query["budget"]) if "budget" in query else None
                except ValueError:
                    message = f"{', '.join(KNOBS)} and budget must be numbers\n"
                    self._send(HTTPStatus.BAD_REQUEST, message.encode(), "text/plain")
                    return
                status, body = service.checkout(params, budget)
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
