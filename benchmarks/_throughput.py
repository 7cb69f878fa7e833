"""Throughput of a 10-step flow vs the same logic written by hand with anyio.

The flow: ``Sequence("seq", [a, b, Parallel("par", [p1..p4], timeout=1), c, d])`` — ten
steps (the sequence, eight requests, the parallel). Requests get the built-in 30 s
timeout; the parallel children's 30 s is later than the group's 1 s so they get no cancel
scope. The hand-written version has the same deadlines: ``fail_after(30)`` around each
sequential request, one task group under ``fail_after(1)``, results kept by name.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from stepwatch import Flow, FlowExecutor, Parallel, Request, Sequence

from ._fanout import TELEMETRY_OFF, noop
from ._stats import Series


def make_flow() -> Flow:
    """The 10-step flow."""
    par = Parallel("par", [Request(f"p{i}", "noop") for i in range(1, 5)], timeout=1)
    seq = Sequence("seq", [Request("a", "noop"), Request("b", "noop"), par, Request("c", "noop")])
    return Flow("ten", [seq, Request("d", "noop")])


async def by_hand(values: dict[str, Any]) -> None:
    """The same flow with anyio primitives."""
    for name in ("a", "b"):
        with anyio.fail_after(30):
            values[name] = await noop(None)
    par: dict[str, Any] = {}

    async def child(name: str) -> None:
        par[name] = await noop(None)

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            for i in range(1, 5):
                tg.start_soon(child, f"p{i}")
    values.update(par)
    values["par"] = par
    with anyio.fail_after(30):
        values["c"] = await noop(None)
    values["seq"] = {k: values[k] for k in ("a", "b", "par", "c")}
    with anyio.fail_after(30):
        values["d"] = await noop(None)


async def measure(runs: int, repeats: int) -> dict[str, Series]:
    """µs per run of each, ``repeats`` blocks of ``runs`` runs, alternating."""
    flow = make_flow()
    ex = FlowExecutor(handlers={"noop": noop}, **TELEMETRY_OFF)  # type: ignore[arg-type]
    out = {"sw": Series("sw", "µs/run"), "anyio": Series("anyio", "µs/run")}

    async def sw_block() -> None:
        for _ in range(runs):
            await ex.run(flow)

    async def hand_block() -> None:
        for _ in range(runs):
            await by_hand({})

    await sw_block()
    await hand_block()
    for r in range(repeats):
        pair = [("sw", sw_block), ("anyio", hand_block)]
        if r % 2:
            pair.reverse()
        for name, fn in pair:
            start = time.perf_counter()
            await fn()
            out[name].add((time.perf_counter() - start) / runs * 1e6)
    return out
