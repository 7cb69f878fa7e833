"""Deadline lateness: how long after a 50 ms group deadline does the call return?

N children sleep 10 s under a 50 ms group deadline. Lateness = the time ``run()`` (or the
hand-written block) returns minus (its start + 50 ms), in ms; the start is taken just
before the call, so stepwatch's own set-up time counts against it.

* ``sw``: ``Parallel(timeout=0.05)`` of async ``Request`` children (StepTimeoutError).
* ``asyncio``: ``asyncio.TaskGroup`` under ``asyncio.timeout(0.05)``.
* ``anyio``: a bare anyio task group under ``move_on_after(0.05)`` that starts all N.

The ``blocked`` variants replace one child by a handler blocked in ``time.sleep``: a sync
stepwatch handler (run in a worker thread, abandoned at the deadline), ``asyncio.to_thread``
and ``anyio.to_thread.run_sync(abandon_on_cancel=True)``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

from stepwatch import Flow, FlowExecutor, Parallel, Request, StepTimeoutError

from ._fanout import TELEMETRY_OFF
from ._stats import Series

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
        self.ex = FlowExecutor(
            handlers={"sleep": sleeper, "block": blocker},
            **TELEMETRY_OFF,  # type: ignore[arg-type]
        )

    async def sw(self) -> None:
        try:
            await self.ex.run(self.flow)
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

    def variants(self) -> dict[str, Callable[[], Awaitable[None]]]:
        return {"sw": self.sw, "asyncio": self.asyncio, "anyio": self.anyio}


async def _anyio_thread() -> None:
    await anyio.to_thread.run_sync(time.sleep, BLOCK, abandon_on_cancel=True)


async def measure(n: int, repeats: int, blocked: bool) -> dict[str, Series]:
    """Lateness in ms of each variant, ``repeats`` times in rotating order."""
    case = Lateness(n, blocked)
    variants = case.variants()
    out = {name: Series(name, "ms late") for name in variants}
    for fn in variants.values():
        await fn()  # warm-up
    if blocked:
        await anyio.sleep(BLOCK + 0.02)
    order = list(variants)
    for r in range(repeats):
        rotated = order[r % len(order) :] + order[: r % len(order)]
        for name in rotated:
            gc.collect()
            start = time.perf_counter()
            await variants[name]()
            out[name].add((time.perf_counter() - start - DEADLINE) * 1e3)
            if blocked:  # let the abandoned thread finish; never more than one alive
                await anyio.sleep(BLOCK + 0.01)
    return out
