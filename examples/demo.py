"""stepwatch demo: a product page fans out to four backends under a 200 ms group deadline.

One backend (recommendations) is slow. The parallel step's deadline stops it, keeps the
three results that arrived, and says which child was still pending. A second run uses
``on_timeout="partial"`` with a fallback so the page still renders.

Run: ``python3 dev.py demo`` (or ``python examples/demo.py`` with stepwatch installed).
No server is needed: metrics go to a private in-memory registry printed at the end.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import anyio
from prometheus_client import CollectorRegistry

from stepwatch import (
    Flow,
    FlowExecutor,
    Outcome,
    Parallel,
    Request,
    RunResult,
    StepTimeoutError,
    Transform,
)

# name -> (typical latency in seconds, payload)
BACKENDS: dict[str, tuple[float, Any]] = {
    "inventory": (0.030, {"sku": "A-1", "in_stock": 12}),
    "pricing": (0.060, {"sku": "A-1", "price": "19.90 EUR"}),
    "reviews": (0.120, {"sku": "A-1", "stars": 4.6}),
    "recommendations": (2.000, ["B-7", "C-2"]),  # the slow one
}


def backend(name: str) -> Any:
    latency, payload = BACKENDS[name]

    async def call(params: dict[str, Any]) -> Any:
        await anyio.sleep(latency * random.uniform(0.9, 1.1))
        return payload

    call.__name__ = name
    return call


def build_flow(on_timeout: str) -> Flow:
    fallback = {"recommendations": []} if on_timeout == "partial" else {}
    return Flow(
        f"product-page-{on_timeout}",
        [
            Transform("query", lambda ctx: {"sku": ctx.input}, inline=True),
            Parallel(
                "enrich",
                [
                    Request(
                        name,
                        name,
                        lambda ctx: ctx.results["query"],
                        **({"fallback": fallback[name]} if name in fallback else {}),
                    )
                    for name in BACKENDS
                ],
                timeout=0.2,
                on_timeout=on_timeout,  # type: ignore[arg-type]
            ),
        ],
    )


def table(outcomes: dict[str, Outcome], children: list[str]) -> str:
    rows = [("child", "status", "cause", "elapsed", "value")]
    for name in children:
        o = outcomes.get(name)
        if o is None:
            rows.append((name, "-", "-", "-", "-"))
            continue
        value = "" if o.value is None and not o.ok else repr(o.value)
        rows.append(
            (
                name,
                o.status.value,
                o.cause.value if o.cause else "",
                f"{o.elapsed * 1000:6.1f} ms",
                value[:40],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join("    " + line for line in lines)


def metrics_summary(registry: CollectorRegistry) -> str:
    """The timeout and cancelled-children series, as Prometheus shows them."""
    lines = []
    for family in registry.collect():
        if family.name in ("stepwatch_step_timeouts", "stepwatch_parallel_children_cancelled"):
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value:
                    labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
                    lines.append(f"    {sample.name}{{{labels}}} {sample.value:g}")
    return "\n".join(lines) or "    (metrics integration not active)"


async def main() -> int:
    registry = CollectorRegistry()
    executor = FlowExecutor(handlers={name: backend(name) for name in BACKENDS}, registry=registry)
    children = list(BACKENDS)

    print("1) on_timeout='raise': the group deadline (200 ms) expires")
    started = anyio.current_time()
    try:
        await executor.run(build_flow("raise"), input="A-1")
    except StepTimeoutError as exc:
        took = (anyio.current_time() - started) * 1000
        print(f"  StepTimeoutError after {took:.0f} ms: {exc}")
        print(f"  partial results : {dict(exc.partial)}")
        print(f"  pending children: {list(exc.pending)}")
        print(table(dict(exc.outcomes), children))
    else:  # pragma: no cover - the demo is built to time out
        print("  unexpected: no timeout")
        return 1

    print("\n2) on_timeout='partial' with a fallback for recommendations")
    result: RunResult = await executor.run(build_flow("partial"), input="A-1")
    enrich = result.outcomes["enrich"]
    print(f"  enrich: status={enrich.status.value}, elapsed={enrich.elapsed * 1000:.0f} ms")
    print(f"  value : {result['enrich']}")
    print(table(dict(result.outcomes), children))

    print("\n3) Prometheus samples recorded (private registry)")
    print(metrics_summary(registry))
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
