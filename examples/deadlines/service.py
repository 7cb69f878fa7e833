"""One service of the deadlines example, as its own process (started by run.py).

    python examples/deadlines/service.py NAME [--fx URL] [--inventory URL] [--pricing URL]
                                              [--otlp ENDPOINT]

NAME is gateway, inventory, pricing or fx. Each serves one JSON-RPC method on
127.0.0.1 (a free port, printed as ``READY <url>``), runs its work as a stepwatch flow
under the caller's budget, and reports the budget it got on arrival:

    gateway    page.render    → Parallel(inventory.stock, pricing.quote)
    inventory  inventory.stock
    pricing    pricing.quote  → fx.rate
    fx         fx.rate

Every result carries ``budgets``: the milliseconds each service had on arrival, so the
caller can show the budget shrinking hop by hop. With ``--otlp`` the spans go to that
OTLP/HTTP endpoint under the service's name.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from typing import Any

import anyio
import httpx
import uvicorn

from stepwatch import Flow, FlowExecutor, Parallel, Request
from stepwatch.http import JsonRpcApp, JsonRpcClient

WORK = {"gateway": 0.005, "inventory": 0.030, "pricing": 0.015, "fx": 0.020}  # seconds


def say(name: str, text: str) -> None:
    print(f"{name:<10} {text}", flush=True)


def budget_ms() -> float:
    return (anyio.current_effective_deadline() - anyio.current_time()) * 1000


def build(name: str, urls: dict[str, str], provider: Any) -> JsonRpcApp:
    """The service's JSON-RPC endpoint (the inbound deadline is built in)."""
    http = httpx.AsyncClient()
    handlers: dict[str, Any] = {}
    for method, service in (
        ("fx.rate", "fx"),
        ("inventory.stock", "inventory"),
        ("pricing.quote", "pricing"),
    ):
        if service in urls:
            handlers |= JsonRpcClient(urls[service], http, target=service).handlers(method)

    async def work(params: dict[str, Any]) -> dict[str, Any]:
        # the service's own work; the edge can slow one service down to show a timeout
        await anyio.sleep(params.get("slow", {}).get(name, WORK[name]))
        return {
            "gateway": {},
            "inventory": {"stock": 7},
            "pricing": {"base": 18.0},
            "fx": {"rate": 1.1},
        }[name]

    handlers["work"] = work
    steps: list[Any] = [Request("work", "work", lambda ctx: ctx.input)]
    if name == "gateway":
        steps.append(
            Parallel(
                "enrich",
                [
                    Request("stock", "inventory.stock", lambda ctx: ctx.input),
                    Request("price", "pricing.quote", lambda ctx: ctx.input),
                ],
            )
        )
    elif name == "pricing":
        steps.append(Request("rate", "fx.rate", lambda ctx: ctx.input))
    executor = FlowExecutor(handlers=handlers, tracer_provider=provider)
    flow = Flow(name, steps)

    async def method(**params: Any) -> dict[str, Any]:
        arrived = budget_ms()
        say(name, f"budget on arrival {arrived:7.1f} ms")
        started = anyio.current_time()
        try:
            result = await executor.run(flow, input=params)
        except anyio.get_cancelled_exc_class():
            spent = (anyio.current_time() - started) * 1000
            say(name, f"cut off at its deadline after {spent:.0f} ms: stopped working")
            raise
        budgets = {name: round(arrived, 1)}
        value = dict(result["work"])
        downstream = list(result.get("enrich", {}).values())  # the gateway's fan-out
        downstream += [result["rate"]] if "rate" in result else []  # pricing's fx call
        for answer in downstream:  # merge what the services below reported
            budgets |= answer.pop("budgets")
            value |= answer
        return {**value, "budgets": budgets}

    methods = {
        "gateway": "page.render",
        "inventory": "inventory.stock",
        "pricing": "pricing.quote",
        "fx": "fx.rate",
    }
    return JsonRpcApp({methods[name]: method})


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(WORK))
    for service in ("fx", "inventory", "pricing"):
        parser.add_argument(f"--{service}", help=f"URL of the {service} service")
    parser.add_argument("--otlp", help="OTLP/HTTP traces endpoint, e.g. a local Jaeger")
    args = parser.parse_args(argv)
    provider = None
    if args.otlp:
        from stepwatch.telemetry import otlp_tracer_provider

        provider = otlp_tracer_provider(args.name, endpoint=args.otlp)
    urls = {s: getattr(args, s) for s in ("fx", "inventory", "pricing") if getattr(args, s)}
    app = build(args.name, urls, provider)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"READY http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    # uvicorn re-raises the signal it stopped on; make SIGTERM end like Ctrl-C, so the
    # last spans are still sent
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        uvicorn.Server(config).run(sockets=[sock])  # until SIGTERM / Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        if provider is not None:
            provider.shutdown()  # send the last spans


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main(sys.argv[1:])
