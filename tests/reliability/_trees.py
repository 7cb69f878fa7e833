"""Random flow trees for the property tests, the probes that watch a run, and the runner.

A tree is drawn as nested specs (plain tuples) by a Hypothesis strategy, then built into
stepwatch steps with unique names. Leaves are ``Delay`` steps and ``Request`` steps whose
handler sleeps, optionally fails, and counts itself alive while it runs.
:func:`run_on_mock_clock` runs one tree on trio's ``MockClock``, optionally under a caller
that cancels.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from trio.testing import MockClock

from stepwatch import (
    NO_FALLBACK,
    Branch,
    Delay,
    Flow,
    FlowExecutor,
    Loop,
    Outcome,
    Parallel,
    Request,
    Retry,
    RunResult,
    Sequence,
    Step,
    StepContext,
    StepEnded,
    StepExecutor,
    StepwatchError,
)
from tests.helpers import memory_tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

DURATIONS = (0.0, 0.01, 0.03, 0.05, 0.1, 0.4, 2.0)
TIMEOUTS = (None, None, None, 0.02, 0.06, 0.15, 0.5, 3.0, math.inf)
# how a request fails: not, always (not retryable), always (retryable), first attempt only
FAILURES = (None, None, "always", "retryable", "first")

Spec = tuple[Any, ...]

# Hypothesis settings of the property tests: derandomized (the same examples every run).
PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def specs(draw: st.DrawFn, depth: int = 0) -> Spec:
    """One random node: a leaf, or a composite with random children and settings."""
    kinds = ["request", "delay"]
    if depth < 3:
        kinds += ["sequence", "parallel", "parallel", "branch", "loop"]
    kind = draw(st.sampled_from(kinds))
    timeout = draw(st.sampled_from(TIMEOUTS))
    if kind == "request":
        return (
            "request",
            timeout,
            draw(st.sampled_from(DURATIONS)),
            draw(st.sampled_from(FAILURES)),
            draw(st.sampled_from((None, None, 2, 3))),  # retry attempts
            draw(st.sampled_from((None, "timeout", "both"))),  # a fallback, covering what
        )
    if kind == "delay":
        return ("delay", timeout, draw(st.sampled_from(DURATIONS)))
    if kind == "branch":
        then = draw(specs(depth + 1))
        otherwise = draw(st.none() | specs(depth + 1))
        return ("branch", timeout, draw(st.booleans()), then, otherwise)
    if kind == "loop":
        return ("loop", timeout, draw(st.integers(1, 3)), draw(specs(depth + 1)))
    children = draw(st.lists(specs(depth + 1), min_size=1, max_size=4))
    if kind == "sequence":
        return ("sequence", timeout, children)
    n = len(children)
    on_failure = draw(st.sampled_from(["raise", "raise", "partial"]))
    return (
        "parallel",
        timeout,
        children,
        draw(st.sampled_from(["raise", "partial"])),
        None if on_failure == "partial" else draw(st.booleans()),  # fail_fast
        draw(st.none() | st.integers(1, n)),  # max_concurrency
        draw(st.none() | st.integers(1, n)),  # min_successes
        on_failure,
    )


flow_timeouts = st.sampled_from((None, None, 0.08, 0.3, 1.0, 5.0))


class Builder:
    """Builds steps from specs, naming them s0, s1, ... (unique within the flow)."""

    def __init__(self) -> None:
        self.count = 0

    def name(self) -> str:
        self.count += 1
        return f"s{self.count}"

    def build(self, spec: Spec) -> Step:
        kind, timeout = spec[0], spec[1]
        name = self.name()
        if kind == "request":
            sleep, fail, attempts, fallback = spec[2:6]
            return Request(
                name,
                "work",
                lambda ctx: {"sleep": sleep, "fail": fail, "attempt": ctx.attempt},
                timeout=timeout,
                retry=None if attempts is None else Retry(attempts, initial=0.01, jitter=False),
                fallback="fallback" if fallback else NO_FALLBACK,
                fallback_on=("timeout", "failure") if fallback == "both" else None,
            )
        if kind == "delay":
            return Delay(name, spec[2], timeout=timeout)
        if kind == "branch":
            flag = spec[2]
            then = self.build(spec[3])
            otherwise = None if spec[4] is None else self.build(spec[4])
            return Branch(name, lambda ctx: flag, then, otherwise, timeout=timeout)
        if kind == "loop":
            return Loop(name, self.build(spec[3]), times=spec[2], timeout=timeout)
        children = [self.build(child) for child in spec[2]]
        if kind == "sequence":
            return Sequence(name, children, timeout=timeout)
        return Parallel(
            name,
            children,
            timeout=timeout,
            on_timeout=spec[3],
            fail_fast=spec[4],
            max_concurrency=spec[5],
            min_successes=spec[6],
            on_failure=spec[7] if len(spec) > 7 else "raise",
        )


@dataclass
class Probe:
    """Watches a run: live handler tasks, every execution started, every outcome recorded.

    ``started`` holds each execution's context (from an executor decorator, so it sees
    exactly the executions the telemetry sees: every step that started); ``records`` every
    ``step_finished`` call as (time, outcome, ctx, deadline of ctx at that time).
    """

    live: int = 0
    max_live: int = 0
    entered: int = 0
    started: list[StepContext] = field(default_factory=list)
    records: list[tuple[float, Outcome, StepContext]] = field(default_factory=list)

    async def work(self, params: dict[str, Any]) -> str:
        self.entered += 1
        self.live += 1
        self.max_live = max(self.max_live, self.live)
        try:
            await anyio.sleep(params["sleep"])
            fail = params["fail"]
            if fail == "always":
                raise RuntimeError("injected failure")
            if fail == "retryable" or (fail == "first" and params["attempt"] == 1):
                raise ConnectionError("injected retryable failure")
            return "ok"
        finally:
            self.live -= 1

    def handlers(self) -> dict[str, Any]:
        """The handlers of the leaves :class:`Builder` makes, by method name."""
        return {"work": self.work}

    def step_finished(self, record: StepEnded, /) -> None:
        self.records.append((anyio.current_time(), record.outcome, record.context))

    def decorator(self, inner: StepExecutor) -> StepExecutor:
        probe = self

        class Counting:
            def can_execute(self, step: Step) -> bool:
                return inner.can_execute(step)

            async def execute(self, step: Step, ctx: StepContext) -> Any:
                probe.started.append(ctx)
                return await inner.execute(step, ctx)

        return Counting()

    # -- derived --------------------------------------------------------------------------
    def own_records(self) -> list[tuple[float, Outcome, StepContext]]:
        """Records of started executions (the hook got the execution's own context)."""
        return [r for r in self.records if r[2].step is not None and r[2].step.name == r[1].name]

    def started_counts(self) -> Counter[str]:
        return Counter(ctx.step.name for ctx in self.started if ctx.step is not None)


def ancestors(ctx: StepContext) -> list[StepContext]:
    """The contexts enclosing ``ctx`` (nearest first), excluding the caller's root."""
    out = []
    parent = ctx.parent
    while parent is not None and parent.step is not None:
        out.append(parent)
        parent = parent.parent
    return out


def steps_under(step: Step, pred: Callable[[Step], bool]) -> bool:
    """True if ``step`` or a descendant satisfies ``pred``."""
    return pred(step) or any(steps_under(c, pred) for c in step.children())


# -- hostile leaves -----------------------------------------------------------------------

HOLDS = (0.0, 0.005, 0.02, 0.07, 0.3)


@st.composite
def hostile_leaf(draw: st.DrawFn, timeout: float | None) -> Spec:
    """A leaf that misbehaves: holds the loop (before or after an await), swallows the
    cancellation, runs sync code in a thread, or a plain request."""
    kind = draw(st.sampled_from(["hog", "io_hog", "stubborn", "sync", "request"]))
    if kind == "hog":  # holds the loop, never awaits
        return ("hog", timeout, 0.0, draw(st.sampled_from(HOLDS[1:])))
    if kind == "io_hog":  # awaits, then holds the loop (CPU work after I/O)
        return ("hog", timeout, draw(st.sampled_from(DURATIONS)), draw(st.sampled_from(HOLDS)))
    if kind == "stubborn":  # catches the cancellation and returns a value
        return ("stubborn", timeout, draw(st.sampled_from(DURATIONS)))
    if kind == "sync":  # a sync handler: runs in a worker thread
        return ("sync", timeout)
    return ("request", timeout, draw(st.sampled_from(DURATIONS)), None, None, None)


@st.composite
def hostile_specs(draw: st.DrawFn, depth: int = 0) -> Spec:
    """Like :func:`specs`, with the hostile leaves mixed in."""
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        return draw(hostile_leaf(draw(st.sampled_from(TIMEOUTS))))
    kind = draw(st.sampled_from(["sequence", "parallel", "parallel", "loop"]))
    timeout = draw(st.sampled_from(TIMEOUTS))
    if kind == "loop":
        return ("loop", timeout, draw(st.integers(1, 3)), draw(hostile_specs(depth + 1)))
    children = draw(st.lists(hostile_specs(depth + 1), min_size=1, max_size=5))
    if kind == "sequence":
        return ("sequence", timeout, children)
    n = len(children)
    return (
        "parallel",
        timeout,
        children,
        draw(st.sampled_from(["raise", "partial"])),
        draw(st.booleans()),
        draw(st.none() | st.integers(1, max(1, n - 1))),  # max_concurrency below the count
        None,
    )


class HostileBuilder(Builder):
    """Builds the hostile leaves too (handlers ``hog``, ``stubborn``, ``sync``)."""

    def build(self, spec: Spec) -> Step:
        kind = spec[0]
        if kind == "hog":
            sleep, hold = spec[2], spec[3]
            return Request(
                self.name(),
                "hog",
                lambda ctx: {"sleep": sleep, "hold": hold, "ctx": ctx},
                timeout=spec[1],
            )
        if kind == "stubborn":
            sleep = spec[2]
            return Request(
                self.name(), "stubborn", lambda ctx: {"sleep": sleep, "ctx": ctx}, timeout=spec[1]
            )
        if kind == "sync":
            return Request(self.name(), "sync", None, timeout=spec[1])
        return super().build(spec)


@dataclass
class HostileProbe(Probe):
    """A :class:`Probe` with the hostile handlers; ``held`` is the loop time they held."""

    held: float = 0.0
    # id(step context) -> when its handler returned a value (hog, stubborn)
    returned: dict[int, float] = field(default_factory=dict)

    async def hog(self, params: dict[str, Any]) -> str:
        from stepwatch.testing import hold_loop

        self.entered += 1
        self.live += 1
        try:
            if params["sleep"]:
                await anyio.sleep(params["sleep"])
            hold_loop(params["hold"])
            self.held += params["hold"]
            self.returned[id(params["ctx"])] = anyio.current_time()
            return "held"
        finally:
            self.live -= 1

    async def stubborn(self, params: dict[str, Any]) -> str:
        self.entered += 1
        self.live += 1
        try:
            await anyio.sleep(params["sleep"])
        except anyio.get_cancelled_exc_class():
            self.returned[id(params["ctx"])] = anyio.current_time()
            return "swallowed"
        finally:
            self.live -= 1
        self.returned[id(params["ctx"])] = anyio.current_time()
        return "slept"

    def sync(self, params: Any) -> str:
        self.entered += 1
        return "sync"

    def handlers(self) -> dict[str, Any]:
        """The handlers of the leaves :class:`HostileBuilder` makes, by method name."""
        return {**super().handlers(), "hog": self.hog, "stubborn": self.stubborn, "sync": self.sync}


# -- running a tree -----------------------------------------------------------------------

P = TypeVar("P", bound=Probe)


@dataclass
class Run(Generic[P]):
    """What one run of a tree showed."""

    flow: Flow
    probe: P
    executor: FlowExecutor
    result: RunResult | None  # None when the caller's cancellation propagated
    error: StepwatchError | None
    cancelled: bool  # the caller's cancellation propagated out of run()
    elapsed: float
    cancelled_at: float | None  # when the caller's cancel really happened (it may be late:
    # a handler holding the loop delays the task that cancels)


def run_on_mock_clock(
    spec: Spec,
    flow_timeout: float | None,
    probe: P,
    builder: Builder,
    caller: Any = None,
    **executor_options: Any,
) -> Run[P]:
    """Build ``spec`` into a flow with ``builder``, run it once on trio's
    ``MockClock(autojump_threshold=0)`` with ``probe``'s handlers, hook and decorator,
    and return what was observed (a StepwatchError's result is the run's result).

    ``caller`` is who awaits ``run()``: ``None`` never cancels, ``"before"`` cancels before
    the call, a number cancels at that virtual time. ``executor_options`` go to
    ``FlowExecutor``; tracing, metrics and logging are off unless they turn them on.
    """
    flow = Flow("prop", [builder.build(spec)], timeout=flow_timeout)
    executor = FlowExecutor(
        handlers=probe.handlers(),
        hooks=[probe],
        decorators=[probe.decorator],
        **{"tracing": False, "metrics": False, "logging": False, **executor_options},
    )
    out: dict[str, Any] = {"result": None, "error": None, "cancelled_at": None}

    async def main() -> None:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                if caller == "before":
                    scope.cancel()
                elif caller is not None:

                    async def cancel_later() -> None:
                        await trio.sleep(caller)
                        out["cancelled_at"] = trio.current_time() - start
                        scope.cancel()

                    nursery.start_soon(cancel_later)
                try:
                    out["result"] = await executor.run(flow)
                except StepwatchError as exc:
                    out["result"], out["error"] = exc.result, exc
                finally:
                    out["elapsed"] = trio.current_time() - start
            out["cancelled"] = scope.cancelled_caught
            nursery.cancel_scope.cancel()

    trio.run(main, clock=MockClock(autojump_threshold=0))
    return Run(
        flow,
        probe,
        executor,
        out["result"],
        out["error"],
        out["cancelled"],
        out["elapsed"],
        out["cancelled_at"],
    )


def telemetry() -> tuple[TracerProvider, InMemorySpanExporter, CollectorRegistry]:
    """An in-memory span exporter's provider, the exporter, and a fresh metrics registry:
    pass them with ``tracing=True, tracer_provider=..., metrics=True, registry=...``."""
    provider, exporter = memory_tracer()
    return provider, exporter, CollectorRegistry()


def counted(registry: CollectorRegistry, name: str) -> float:
    """The sum of the samples called ``name`` over every label set (e.g. a counter's
    ``..._total`` over all its series)."""
    samples = (s for metric in registry.collect() for s in metric.samples if s.name == name)
    return sum((s.value for s in samples), 0.0)
