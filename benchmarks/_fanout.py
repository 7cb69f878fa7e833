"""Fan-out of N children: stepwatch ``Parallel`` vs the same semantics written by hand.

Every variant runs in the same asyncio event loop (anyio's asyncio backend) and is timed
per repeat in a rotating order, so drift hits all of them alike.

Variants (µs per child = wall time of one run / N):

* ``sw_off``: ``Parallel(timeout=20)`` of ``Request`` children whose resolved timeout
  (30 s, the built-in default) is later than the group's deadline, so no child gets a
  cancel scope of its own; telemetry off. Baseline ``anyio``: a task group under
  ``fail_after(20)``; reference ``asyncio``: ``asyncio.TaskGroup`` under
  ``asyncio.timeout(20)``.
* ``sw_off_own``: children with their own ``timeout=10`` (earlier than the group's 20 s).
  Baseline ``anyio_own``: the task group plus a ``fail_after(10)`` per child.
* ``sw_trace``: tracing on (SDK ``TracerProvider`` + ``BatchSpanProcessor`` + a no-op
  exporter). Baseline ``anyio_span``: ``anyio`` + a raw SDK span per child (and one for
  the group and one for the run).
* ``sw_full``: tracing and metrics on (fresh ``CollectorRegistry``). Baseline
  ``anyio_span_hist``: ``anyio_span`` + a raw histogram observe per child.

The issue-10 cases (judged at N = 1 000):

* ``sw_defaults``: ``FlowExecutor()`` as a user gets it: metrics on (to a fresh
  ``CollectorRegistry``), tracing on but no SDK provider (the API's no-op tracer), logging
  on. Baseline ``anyio_hist``: ``anyio`` + one raw histogram observe per child.
* ``sw_sdk``: the same plus an SDK ``TracerProvider`` (``tracer_provider=``). Baseline
  ``anyio_span_hist``.

The hand-written observes time the child with ``time.perf_counter()``, as
``Histogram.time()`` does.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, Histogram

from stepwatch import Flow, FlowExecutor, Parallel, Request

from ._stats import Series, rotated, timed

GROUP_TIMEOUT = 20.0
# The memory variants keep all N children alive under tracemalloc: 100 000 of them take
# ≈ 20 s on a loaded 2-core machine, so their deadline is far away (it is never the point).
LIVE_TIMEOUT = 600.0
CHILD_TIMEOUT = 10.0

TELEMETRY_OFF = {"tracing": False, "metrics": False, "logging": False}


async def noop(params: Any) -> Any:
    """The children's handler: returns at once (what is measured is the machinery)."""
    return params


def make_tracer_provider(**batch: Any) -> Any:
    """SDK provider + BatchSpanProcessor + an exporter that drops everything.

    ``batch`` goes to ``BatchSpanProcessor`` (the callgrind cases make its queue big enough
    that the export thread never wakes during a counted run).
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NoopExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopExporter(), **batch))
    return provider


@dataclass
class FanoutResult:
    """Per N: variant name → Series of µs per child; plus memory (bytes per child)."""

    n: int
    repeats: int
    time: dict[str, Series] = field(default_factory=dict)


class Fanout:
    """Builds every variant for one N once; ``variants()`` gives the coroutines to time."""

    def __init__(self, n: int, provider: Any) -> None:
        self.n = n
        self.provider = provider
        self.tracer = provider.get_tracer("bench")
        names = [f"c{i}" for i in range(n)]
        self.names = names
        self.flow = Flow(
            "fan", [Parallel("p", [Request(c, "noop") for c in names], timeout=GROUP_TIMEOUT)]
        )
        self.flow_own = Flow(
            "fan_own",
            [
                Parallel(
                    "p",
                    [Request(c, "noop", timeout=CHILD_TIMEOUT) for c in names],
                    timeout=GROUP_TIMEOUT,
                )
            ],
        )
        self.flow_live = Flow(
            "fan_live",
            [
                Parallel(
                    "p",
                    # unbounded children under the group: no cancel scope each, as above
                    [Request(c, "gate", timeout=math.inf) for c in names],
                    timeout=LIVE_TIMEOUT,
                )
            ],
        )
        self.arrived = 0
        self.all_in = anyio.Event()
        handlers = {"noop": noop, "gate": self.gate}
        self.ex_off = FlowExecutor(handlers=handlers, **TELEMETRY_OFF)  # type: ignore[arg-type]
        self.ex_trace = FlowExecutor(
            handlers=handlers, tracer_provider=provider, metrics=False, logging=False
        )
        self.ex_full = FlowExecutor(
            handlers=handlers,
            tracer_provider=provider,
            registry=CollectorRegistry(),
            logging=False,
        )
        # as a user gets it: no tracer provider (the API's no-op tracer unless the
        # application set a global one), metrics to a fresh registry, logging on
        self.ex_defaults = FlowExecutor(handlers=handlers, registry=CollectorRegistry())
        self.ex_sdk = FlowExecutor(
            handlers=handlers, tracer_provider=provider, registry=CollectorRegistry()
        )
        self.hist = Histogram(
            "bench_step_duration_seconds",
            "hand-written baseline histogram",
            ("flow", "step", "step_type", "outcome"),
            registry=CollectorRegistry(),
        )
        self.results: list[Any] = [None] * n

    async def gate(self, params: Any) -> Any:
        """A child that waits until all N children are alive (for the memory figure)."""
        self.arrived += 1
        if self.arrived == self.n:
            self.all_in.set()
        await self.all_in.wait()
        return params

    def _reset_gate(self) -> None:
        self.arrived = 0
        self.all_in = anyio.Event()

    # -- stepwatch -----------------------------------------------------------------------
    async def sw_off(self) -> None:
        await self.ex_off.run(self.flow)

    async def sw_live(self) -> None:
        self._reset_gate()
        await self.ex_off.run(self.flow_live)

    async def anyio_live(self) -> None:
        self._reset_gate()
        gate = self.gate
        with anyio.fail_after(LIVE_TIMEOUT):
            async with anyio.create_task_group() as tg:
                for _ in range(self.n):
                    tg.start_soon(gate, None)

    async def asyncio_live(self) -> None:
        self._reset_gate()
        async with asyncio.timeout(LIVE_TIMEOUT), asyncio.TaskGroup() as tg:
            for _ in range(self.n):
                tg.create_task(self.gate(None))

    async def sw_off_own(self) -> None:
        await self.ex_off.run(self.flow_own)

    async def sw_trace(self) -> None:
        await self.ex_trace.run(self.flow)

    async def sw_full(self) -> None:
        await self.ex_full.run(self.flow)

    async def sw_defaults(self) -> None:
        await self.ex_defaults.run(self.flow)

    async def sw_sdk(self) -> None:
        await self.ex_sdk.run(self.flow)

    # -- hand-written baselines ----------------------------------------------------------
    async def anyio(self) -> None:
        results = self.results

        async def child(i: int) -> None:
            results[i] = await noop(None)

        with anyio.fail_after(GROUP_TIMEOUT):
            async with anyio.create_task_group() as tg:
                for i in range(self.n):
                    tg.start_soon(child, i)

    async def anyio_own(self) -> None:
        results = self.results

        async def child(i: int) -> None:
            with anyio.fail_after(CHILD_TIMEOUT):
                results[i] = await noop(None)

        with anyio.fail_after(GROUP_TIMEOUT):
            async with anyio.create_task_group() as tg:
                for i in range(self.n):
                    tg.start_soon(child, i)

    async def anyio_hist(self) -> None:
        results = self.results
        names = self.names
        hist = self.hist

        async def child(i: int) -> None:
            start = time.perf_counter()
            results[i] = await noop(None)
            hist.labels("fan", names[i], "request", "success").observe(time.perf_counter() - start)

        with anyio.fail_after(GROUP_TIMEOUT):
            async with anyio.create_task_group() as tg:
                for i in range(self.n):
                    tg.start_soon(child, i)

    async def _anyio_telemetry(self, observe: bool) -> None:
        results = self.results
        tracer = self.tracer
        names = self.names
        hist = self.hist

        async def child(i: int) -> None:
            with tracer.start_as_current_span("request " + names[i]):
                start = time.perf_counter()
                results[i] = await noop(None)
                if observe:
                    hist.labels("fan", names[i], "request", "success").observe(
                        time.perf_counter() - start
                    )

        with tracer.start_as_current_span("flow fan"), tracer.start_as_current_span("parallel p"):
            with anyio.fail_after(GROUP_TIMEOUT):
                async with anyio.create_task_group() as tg:
                    for i in range(self.n):
                        tg.start_soon(child, i)

    async def anyio_span(self) -> None:
        await self._anyio_telemetry(observe=False)

    async def anyio_span_hist(self) -> None:
        await self._anyio_telemetry(observe=True)

    async def asyncio(self) -> None:
        results = self.results

        async def child(i: int) -> None:
            results[i] = await noop(None)

        async with asyncio.timeout(GROUP_TIMEOUT), asyncio.TaskGroup() as tg:
            for i in range(self.n):
                tg.create_task(child(i))

    def variants(
        self, telemetry: bool, live: bool = False
    ) -> dict[str, Callable[[], Awaitable[None]]]:
        out: dict[str, Callable[[], Awaitable[None]]] = {
            "sw_off": self.sw_off,
            "anyio": self.anyio,
            "asyncio": self.asyncio,
            "sw_off_own": self.sw_off_own,
            "anyio_own": self.anyio_own,
        }
        if live:
            out.update(
                sw_live=self.sw_live, anyio_live=self.anyio_live, asyncio_live=self.asyncio_live
            )
        if telemetry:
            out.update(
                sw_trace=self.sw_trace,
                anyio_span=self.anyio_span,
                sw_full=self.sw_full,
                anyio_span_hist=self.anyio_span_hist,
                sw_defaults=self.sw_defaults,
                anyio_hist=self.anyio_hist,
                sw_sdk=self.sw_sdk,
            )
        return out


async def measure_time(n: int, repeats: int, provider: Any, telemetry: bool) -> FanoutResult:
    """Time every variant ``repeats`` times (after one warm-up run each)."""
    fan = Fanout(n, provider)
    variants = fan.variants(telemetry)
    result = FanoutResult(n, repeats)
    for name in variants:
        result.time[name] = Series(name, "µs/child")
    for fn in variants.values():  # warm-up: plans, labelled metric children, caches
        await fn()
    order = list(variants)
    for r in range(repeats):
        for name in rotated(order, r):
            seconds = await timed(variants[name])
            result.time[name].add(seconds / n * 1e6)
    return result


async def measure_memory(n: int, provider: Any, names: list[str]) -> dict[str, float]:
    """Peak traced memory of one run per variant, in bytes per child (tracemalloc)."""
    fan = Fanout(n, provider)
    variants = fan.variants(telemetry=True, live=True)
    out: dict[str, float] = {}
    for name in names:
        fn = variants[name]
        await fn()  # warm-up outside the trace
        gc.collect()
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            await fn()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        out[name] = (peak - base) / n
    return out
