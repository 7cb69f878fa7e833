"""Send stepwatch traces to a local Jaeger: a fan-out whose group deadline expires.

Start Jaeger (``docker compose -f examples/jaeger/docker-compose.yml up -d``), run this
script (``python examples/jaeger/run_flow.py``; needs the otlp extra: ``pip install -e '.[otlp]'``)
and open the printed link. You see:

* trace 1, "GET /product/A-1": the flow span, the ``parallel enrich`` span in red
  (``error.type=timeout``, a ``stepwatch.timeout`` log naming the pending child), the
  ``recommendations`` child cut off (``stepwatch.cancel.cause=deadline``, not red), the
  children that finished in time, and a ``stepwatch.near_timeout`` log on ``reviews``;
* trace 2, "POST /notify": a detached fan-out: the ``parallel notify`` span, and one
  separate trace per child, each with a FOLLOWS_FROM reference back to it.

Options: ``--endpoint`` (default ``http://localhost:4318/v1/traces``), ``--service``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import anyio
from opentelemetry.trace import TracerProvider, format_trace_id

from stepwatch import Flow, FlowExecutor, Parallel, Request, StepTimeoutError, Transform
from stepwatch.telemetry import otlp_tracer_provider

# name -> (latency in seconds, payload)
BACKENDS: dict[str, tuple[float, Any]] = {
    "inventory": (0.090, {"in_stock": 12}),
    "pricing": (0.180, {"price": "19.90 EUR"}),
    "reviews": (0.250, {"stars": 4.6}),  # 83 % of its 0.3 s budget: near timeout
    "recommendations": (2.000, ["B-7", "C-2"]),  # the slow one: cut off at 0.6 s
    "email": (0.060, "sent"),
    "sms": (0.120, "sent"),
    "push": (1.500, "sent"),  # cut off by the 0.3 s notify deadline
}


def backend(name: str) -> Any:
    latency, payload = BACKENDS[name]

    async def call(params: Any) -> Any:
        await anyio.sleep(latency)
        return payload

    return call


PRODUCT_PAGE = Flow(
    "product-page",
    [
        Transform("query", lambda ctx: {"sku": ctx.input}, inline=True),
        Parallel(
            "enrich",
            [
                Request("inventory", "inventory"),
                Request("pricing", "pricing"),
                Request("reviews", "reviews", timeout=0.3),
                Request("recommendations", "recommendations"),
            ],
            timeout=0.6,
        ),
    ],
)

NOTIFY = Flow(
    "notify",
    Parallel(
        "notify",
        [Request("email", "email"), Request("sms", "sms"), Request("push", "push")],
        timeout=0.3,
        on_timeout="partial",
        trace_children="detached",  # one trace per child, linked to the parallel span
    ),
)


async def main(provider: TracerProvider) -> list[str]:
    """Run both flows under an application span each; return the two trace ids (hex)."""
    executor = FlowExecutor(
        handlers={name: backend(name) for name in BACKENDS},
        tracer_provider=provider,
        metrics=False,
    )
    tracer = provider.get_tracer("example-app")
    trace_ids = []
    with tracer.start_as_current_span("GET /product/A-1") as span:
        try:
            await executor.run(PRODUCT_PAGE, input="A-1")
        except StepTimeoutError as exc:
            print(f"product-page: {exc}")
        trace_ids.append(format_trace_id(span.get_span_context().trace_id))
    with tracer.start_as_current_span("POST /notify") as span:
        result = await executor.run(NOTIFY)
        print(f"notify: partial results {result['notify']}")
        trace_ids.append(format_trace_id(span.get_span_context().trace_id))
    return trace_ids


def cli() -> None:
    import structlog

    from stepwatch.telemetry import add_trace_ids

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", default="http://localhost:4318/v1/traces")
    parser.add_argument("--service", default="stepwatch-example")
    args = parser.parse_args()
    # the application (not the library) configures structlog: warnings with trace ids
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            add_trace_ids,
            structlog.dev.ConsoleRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    provider = otlp_tracer_provider(args.service, endpoint=args.endpoint, timeout=5)
    try:
        trace_ids = anyio.run(main, provider)
    finally:
        provider.shutdown()  # flushes the batch
    ui = args.endpoint.split("://", 1)[-1].split(":", 1)[0]
    for trace_id in trace_ids:
        print(f"http://{ui}:16686/trace/{trace_id}")


if __name__ == "__main__":
    cli()
