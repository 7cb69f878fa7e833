"""A deadline set at the edge, honoured by every service: one command, no Docker.

    pip install -e '.[http,otlp]' uvicorn              # in a checkout
    python examples/deadlines/run.py                  # traces printed from a local receiver
    python examples/deadlines/run.py --otlp http://localhost:4318/v1/traces   # to Jaeger

Starts four services as separate processes on 127.0.0.1 (see service.py)::

    edge (this script) ──▶ gateway ──┬──▶ inventory
                                      └──▶ pricing ──▶ fx

then, as the edge, calls the gateway twice through a stepwatch flow:

1. with a 500 ms budget: every service reports the budget it got on arrival, smaller at
   each hop by the time spent upstream and the 10 ms safety margin;
2. with a 250 ms budget while fx is slowed to 1 s: fx, pricing and the gateway are cut
   off at their deadlines (before the edge's), and the edge reports its own timeout.

Without ``--otlp``, a small OTLP receiver in this process collects every service's spans
and the first request's trace is printed: one trace across all five processes.
"""

from __future__ import annotations

import argparse
import logging
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import structlog

from stepwatch import Flow, FlowExecutor, Request, StepTimeoutError
from stepwatch.http import JsonRpcClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from receiver import Receiver  # noqa: E402

ORDER = ("gateway", "inventory", "pricing", "fx")


class Services:
    """The four service processes and their output lines."""

    def __init__(self, otlp: str | None) -> None:
        self.otlp = otlp
        self.procs: list[subprocess.Popen[str]] = []
        self.lines: queue.Queue[str] = queue.Queue()

    def start(self, name: str, *args: str) -> str:
        extra = ["--otlp", self.otlp] if self.otlp else []
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "service.py"), name, *args, *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        if ready[:1] != ["READY"]:
            raise RuntimeError(f"{name} did not start")
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()
        return ready[1]

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put(line.rstrip())

    def drain(self) -> list[str]:
        found = []
        while not self.lines.empty():
            found.append(self.lines.get())
        return found

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()  # SIGTERM: uvicorn shuts down, the service flushes its spans
        for proc in self.procs:
            proc.wait(timeout=20)


async def edge_call(url: str, budget: float, params: dict[str, Any], provider: Any) -> Any:
    """The edge: a flow whose one step calls the gateway under ``budget`` seconds."""
    async with JsonRpcClient(url, target="gateway") as gateway:
        executor = FlowExecutor(handlers=gateway.handlers("page.render"), tracer_provider=provider)
        flow = Flow("edge", [Request("page", "page.render", params, timeout=budget)])
        return (await executor.run(flow))["page"]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--otlp", help="send spans to this OTLP/HTTP endpoint instead")
    args = parser.parse_args(argv)
    # the edge prints its timeout itself; keep stepwatch's warnings out of the output
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    receiver = None if args.otlp else Receiver.start_if_possible()
    otlp = args.otlp or (receiver.endpoint if receiver else None)
    provider = None
    if otlp:
        from stepwatch.telemetry import otlp_tracer_provider

        provider = otlp_tracer_provider("edge", endpoint=otlp)
    services = Services(otlp)
    try:
        fx, inventory = services.start("fx"), services.start("inventory")
        pricing = services.start("pricing", "--fx", fx)
        gateway = services.start("gateway", "--inventory", inventory, "--pricing", pricing)
        print("started gateway, inventory, pricing and fx on 127.0.0.1\n")

        print("1) the edge calls the gateway with a 500 ms budget")
        page = anyio.run(edge_call, gateway, 0.5, {"sku": "A-1"}, provider)
        budgets = page.pop("budgets")
        print(f"   {'edge':<10} step timeout     500.0 ms  (sends it minus a 10 ms margin)")
        for name in ORDER:
            print(f"   {name:<10} budget on arrival {budgets[name]:6.1f} ms")
        print(f"   answer: {page}\n")
        services.drain()

        print("2) the edge calls with a 250 ms budget while fx takes 1 s")
        try:
            anyio.run(edge_call, gateway, 0.25, {"sku": "A-1", "slow": {"fx": 1.0}}, provider)
        except StepTimeoutError as exc:
            print(f"   edge: {type(exc).__name__}: {exc}")
        anyio.run(anyio.sleep, 0.3)  # let the services' lines arrive
        for line in services.drain():
            print(f"   {line}")
    finally:
        services.stop()
        if provider is not None:
            provider.shutdown()
    if receiver is not None:
        print("\n3) one trace across the services (spans received over OTLP)")
        receiver.print_first_trace(indent="   ")
        receiver.stop()
    elif not args.otlp:
        print("\n(install 'stepwatch[otlp]' to see the trace across the services)")


if __name__ == "__main__":
    main(sys.argv[1:])
