"""Deadline lateness: how long after a 50 ms group deadline does the call return?

N children sleep 10 s under a 50 ms group deadline. Lateness = the time ``run()`` (or the
hand-written block) returns minus (its start + 50 ms), in ms; the start is taken just
before the call, so stepwatch's own set-up time counts against it.

* ``sw``: ``Parallel(timeout=0.05)`` of async ``Request`` children (StepTimeoutError),
  telemetry off.
* ``sw_defaults``: the same with ``FlowExecutor()``'s defaults (metrics to a fresh
  ``CollectorRegistry``, tracing through the API's no-op tracer, logging on): the issue-10
  case, measured in separate processes (``python -m benchmarks._lateness``, one per run)
  so that each run starts from a fresh heap, as a separate benchmark run would.
* ``asyncio``: ``asyncio.TaskGroup`` under ``asyncio.timeout(0.05)``.
* ``anyio``: a bare anyio task group under ``move_on_after(0.05)`` that starts all N.

The ``blocked`` variants replace one child by a handler blocked in ``time.sleep``: a sync
stepwatch handler (run in a worker thread, abandoned at the deadline), ``asyncio.to_thread``
and ``anyio.to_thread.run_sync(abandon_on_cancel=True)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
from prometheus_client import CollectorRegistry

from stepwatch import Flow, FlowExecutor, Parallel, Request, StepTimeoutError

from ._fanout import TELEMETRY_OFF
from ._logs import quiet_structlog
from ._stats import Series, rotated, timed

DEADLINE = 0.05
SLEEP = 10.0
BLOCK = 0.12  # how long the blocked child's thread sleeps


async def sleeper(params: Any) -> None:
    """A child that would run far past the deadline."""
    await anyio.sleep(SLEEP)


def blocker(params: Any) -> None:
    """A sync handler stuck in a blocking call."""
    time.sleep(BLOCK)


class Lateness:
    """The variants for one N (``blocked``: one child is a blocking sync call)."""

    def __init__(self, n: int, blocked: bool) -> None:
        self.n = n
        self.blocked = blocked
        children = [Request(f"c{i}", "sleep") for i in range(n - 1 if blocked else n)]
        if blocked:
            children.append(Request("blocked", "block"))
        self.flow = Flow("late", [Parallel("p", children, timeout=DEADLINE)])
        handlers = {"sleep": sleeper, "block": blocker}
        self.ex = FlowExecutor(handlers=handlers, **TELEMETRY_OFF)  # type: ignore[arg-type]
        self.ex_defaults = FlowExecutor(handlers=handlers, registry=CollectorRegistry())

    async def sw(self) -> None:
        await self._sw(self.ex)

    async def sw_defaults(self) -> None:
        await self._sw(self.ex_defaults)

    async def _sw(self, ex: FlowExecutor) -> None:
        try:
            await ex.run(self.flow)
        except StepTimeoutError:
            return
        raise AssertionError("the group did not time out")

    async def asyncio(self) -> None:
        try:
            async with asyncio.timeout(DEADLINE), asyncio.TaskGroup() as tg:
                for _ in range(self.n - 1 if self.blocked else self.n):
                    tg.create_task(asyncio.sleep(SLEEP))
                if self.blocked:
                    tg.create_task(asyncio.to_thread(time.sleep, BLOCK))
        except TimeoutError:
            return
        raise AssertionError("the group did not time out")

    async def anyio(self) -> None:
        with anyio.move_on_after(DEADLINE) as scope:
            async with anyio.create_task_group() as tg:
                for _ in range(self.n - 1 if self.blocked else self.n):
                    tg.start_soon(anyio.sleep, SLEEP)
                if self.blocked:
                    tg.start_soon(_anyio_thread)
        assert scope.cancelled_caught


async def _anyio_thread() -> None:
    await anyio.to_thread.run_sync(time.sleep, BLOCK, abandon_on_cancel=True)


async def measure(
    n: int, repeats: int, blocked: bool, names: tuple[str, ...] = ("sw", "asyncio", "anyio")
) -> dict[str, Series]:
    """Lateness in ms of each variant named, ``repeats`` times in rotating order."""
    case = Lateness(n, blocked)
    variants: dict[str, Callable[[], Awaitable[None]]] = {
        name: getattr(case, name) for name in names
    }
    out = {name: Series(name, "ms late") for name in variants}
    for fn in variants.values():
        await fn()  # warm-up
    if blocked:
        await anyio.sleep(BLOCK + 0.02)
    order = list(variants)
    for r in range(repeats):
        for name in rotated(order, r):
            out[name].add((await timed(variants[name]) - DEADLINE) * 1e3)
            if blocked:  # let the abandoned thread finish; never more than one alive
                await anyio.sleep(BLOCK + 0.01)
    return out


def main(argv: list[str] | None = None) -> None:
    """One run of the issue-10 lateness case; prints the lateness values (ms) as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._lateness")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    quiet_structlog()
    res = anyio.run(
        measure, args.n, args.repeats, False, ("sw_defaults", "asyncio"), backend="asyncio"
    )
    print(json.dumps({name: series.values for name, series in res.items()}))


if __name__ == "__main__":
    main(sys.argv[1:])
