"""Tracing: span tree, status and outcome rules, detached children, every span ended."""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import stepwatch
from stepwatch import (
    CancelCause,
    Flow,
    FlowExecutor,
    FlowTimeoutError,
    Loop,
    Parallel,
    Request,
    Retry,
    Sequence,
    Step,
    StepContext,
    StepFailedError,
    StepTimeoutError,
    Transform,
    ValidationError,
)
from stepwatch.telemetry import TracingConfig
from stepwatch.testing import sleeping as sleeper
from tests.helpers import memory_tracer

from .handlers import Boom, boom

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


# -- helpers -----------------------------------------------------------------------------


HANDLERS: dict[str, Callable[[Any], Any]] = {
    "fast": sleeper(0.01, "fast"),
    "medium": sleeper(0.05, "medium"),
    "slow": sleeper(10, "slow"),
    "boom": boom,
}


class Tracker(SpanProcessor):
    """Remembers every span started and ended, to prove none is left open."""

    def __init__(self) -> None:
        self.started: dict[int, str] = {}
        self.ended: set[int] = set()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started[span.context.span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        assert span.context is not None
        self.ended.add(span.context.span_id)

    def unended(self) -> list[str]:
        return [name for sid, name in self.started.items() if sid not in self.ended]


@dataclass
class Traces:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    tracker: Tracker

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def by_name(self) -> dict[str, ReadableSpan]:
        spans = self.spans()
        named = {s.name: s for s in spans}
        assert len(named) == len(spans), [s.name for s in spans]
        return named

    def executor(self, **kwargs: Any) -> FlowExecutor:
        kwargs.setdefault("handlers", HANDLERS)
        kwargs.setdefault("metrics", False)
        kwargs.setdefault("logging", False)
        return FlowExecutor(tracer_provider=self.provider, **kwargs)


@pytest.fixture
def traces() -> Iterator[Traces]:
    provider, exporter = memory_tracer()
    tracker = Tracker()
    provider.add_span_processor(tracker)
    yield Traces(provider, exporter, tracker)
    assert tracker.unended() == []
    provider.shutdown()


@pytest.fixture(autouse=True)
def no_context_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test if OpenTelemetry logged a context problem (e.g. a failed detach)."""
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    yield
    bad = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("opentelemetry.context") or "detach" in r.getMessage()
    ]
    assert bad == []


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def exception_events(spans: list[ReadableSpan]) -> list[tuple[str, str]]:
    return [
        (s.name, str((e.attributes or {}).get("exception.type")))
        for s in spans
        for e in s.events
        if e.name == "exception"
    ]


# -- span tree ---------------------------------------------------------------------------


class TestSpanTree:
    async def test_parallel_nested_in_a_sequence(self, traces: Traces) -> None:
        """Names, parent ids, kinds and attributes of a flow with a parallel in a sequence."""
        flow = Flow(
            "checkout",
            [
                Request("first", "fast"),
                Sequence(
                    "seq",
                    [
                        Parallel("enrich", [Request("a", "fast"), Request("b", "medium")]),
                        Transform("total", lambda ctx: len(ctx.results), inline=True),
                    ],
                ),
            ],
        )
        result = await traces.executor().run(flow)
        assert result["a"] == "fast"
        spans = traces.by_name()
        assert set(spans) == {
            "flow checkout",
            "request first",
            "sequence seq",
            "parallel enrich",
            "request a",
            "request b",
            "transform total",
        }
        root = spans["flow checkout"]
        assert root.parent is None
        expected_parent = {
            "request first": "flow checkout",
            "sequence seq": "flow checkout",
            "parallel enrich": "sequence seq",
            "request a": "parallel enrich",
            "request b": "parallel enrich",
            "transform total": "sequence seq",
        }
        for name, parent in expected_parent.items():
            assert parent_id(spans[name]) == span_id(spans[parent]), name
        assert {trace_id(s) for s in spans.values()} == {trace_id(root)}
        for span in spans.values():
            assert span.kind is SpanKind.INTERNAL
            assert span.status.status_code is StatusCode.UNSET
            assert span.instrumentation_scope is not None
            assert span.instrumentation_scope.name == "stepwatch"
            assert span.instrumentation_scope.version == stepwatch.__version__
            assert attrs(span)["stepwatch.flow.name"] == "checkout"
            assert attrs(span)["stepwatch.step.outcome"] == "success"
            assert attrs(span)["stepwatch.step.attempts"] == 1
            assert "error.type" not in attrs(span)
        assert attrs(root)["stepwatch.step.type"] == "flow"
        assert attrs(root)["stepwatch.step.name"] == "checkout"
        assert attrs(root)["stepwatch.run.id"] == result.run_id
        assert "stepwatch.step.timeout" not in attrs(root)
        a = attrs(spans["request a"])
        assert a["stepwatch.step.name"] == "a"
        assert a["stepwatch.step.type"] == "request"
        assert a["stepwatch.step.timeout"] == 30.0
        assert a["stepwatch.parallel.child.index"] == 0
        assert attrs(spans["request b"])["stepwatch.parallel.child.index"] == 1
        assert "stepwatch.parallel.child.index" not in attrs(spans["request first"])
        assert "stepwatch.parallel.child.index" not in attrs(spans["transform total"])
        p = attrs(spans["parallel enrich"])
        assert p["stepwatch.parallel.trace_children"] == "nested"
        assert p["stepwatch.parallel.children.total"] == 2
        assert p["stepwatch.parallel.children.succeeded"] == 2
        assert p["stepwatch.parallel.children.cancelled"] == 0
        assert "stepwatch.step.timeout" not in p  # parallel: unbounded by default

    async def test_caller_span_is_the_flow_spans_parent(self, traces: Traces) -> None:
        """A span current around run() (e.g. the HTTP request's) parents the flow span."""
        tracer = traces.provider.get_tracer("app")
        with tracer.start_as_current_span("GET /checkout") as outer:
            await traces.executor().run(Flow("f", Request("a", "fast")))
        spans = traces.by_name()
        assert parent_id(spans["flow f"]) == outer.get_span_context().span_id

    async def test_handler_spans_nest_under_the_request_span(self, traces: Traces) -> None:
        """Spans a handler creates are children of its step's span (the current span)."""
        tracer = traces.provider.get_tracer("app")

        async def traced_handler(params: Any) -> str:
            with tracer.start_as_current_span("db query"):
                await anyio.sleep(0.01)
            return "ok"

        ex = traces.executor(handlers={"db": traced_handler})
        await ex.run(Flow("f", Parallel("p", [Request("a", "db")])))
        spans = traces.by_name()
        assert parent_id(spans["db query"]) == span_id(spans["request a"])

    async def test_loop_iterations_carry_their_index(self, traces: Traces) -> None:
        """Each loop body run is its own span, with stepwatch.loop.iteration."""
        await traces.executor().run(Flow("f", Loop("again", Request("body", "fast"), times=3)))
        bodies = [s for s in traces.spans() if s.name == "request body"]
        assert [attrs(s)["stepwatch.loop.iteration"] for s in bodies] == [0, 1, 2]
        loop = next(s for s in traces.spans() if s.name == "loop again")
        assert {parent_id(s) for s in bodies} == {span_id(loop)}

    async def test_retried_step_is_one_span_with_attempts(self, traces: Traces) -> None:
        """Retries happen inside one span; stepwatch.step.attempts counts them."""
        calls = 0

        async def flaky(params: Any) -> str:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise StepTimeoutError(
                    "upstream slow", step_name="x", step_type="request", timeout=1, elapsed=1
                )
            return "ok"

        ex = traces.executor(handlers={"flaky": flaky})
        flow = Flow("f", Request("r", "flaky", retry=Retry(attempts=3, initial=0.001)))
        await ex.run(flow)
        span = traces.by_name()["request r"]
        assert attrs(span)["stepwatch.step.attempts"] == 3
        assert attrs(span)["stepwatch.step.outcome"] == "success"


# -- timeouts, failures, cancellation ---------------------------------------------------


class TestTimeouts:
    async def test_timed_out_parallel(self, traces: Traces) -> None:
        """The parallel span is ERROR/timeout; cut-off children are UNSET cancellations."""
        flow = Flow(
            "checkout",
            Parallel(
                "enrich",
                [Request("a", "fast"), Request("b", "slow"), Request("c", "slow")],
                timeout=0.1,
            ),
        )
        with pytest.raises(StepTimeoutError):
            await traces.executor().run(flow)
        spans = traces.by_name()
        par = spans["parallel enrich"]
        assert par.status.status_code is StatusCode.ERROR
        assert "timed out" in (par.status.description or "")
        p = attrs(par)
        assert p["error.type"] == "timeout"
        assert p["stepwatch.step.outcome"] == "timeout"
        assert p["stepwatch.step.timeout"] == 0.1
        assert p["stepwatch.parallel.children.succeeded"] == 1
        assert p["stepwatch.parallel.children.cancelled"] == 2
        assert p["stepwatch.parallel.children.failed"] == 0
        (event,) = [e for e in par.events if e.name == "stepwatch.timeout"]
        assert event.attributes is not None
        assert tuple(event.attributes["stepwatch.pending"]) == ("b", "c")  # type: ignore[arg-type]
        assert event.attributes["stepwatch.pending.count"] == 2
        for name in ("request b", "request c"):
            child = attrs(spans[name])
            assert spans[name].status.status_code is StatusCode.UNSET
            assert child["stepwatch.step.outcome"] == "cancellation"
            assert child["stepwatch.cancel.cause"] == "deadline"
            assert "error.type" not in child
            assert child["stepwatch.step.effective_timeout"] == pytest.approx(0.1, abs=0.01)
        a = spans["request a"]
        assert a.status.status_code is StatusCode.UNSET
        assert attrs(a)["stepwatch.step.outcome"] == "success"
        assert "stepwatch.cancel.cause" not in attrs(a)
        # the error passes through the flow: ERROR there too, but recorded only once
        root = spans["flow checkout"]
        assert root.status.status_code is StatusCode.ERROR
        assert attrs(root)["error.type"] == "stepwatch.StepTimeoutError"
        assert attrs(root)["stepwatch.step.outcome"] == "failure"
        assert exception_events(traces.spans()) == [
            ("parallel enrich", "stepwatch.StepTimeoutError")
        ]

    async def test_partial_results_still_mark_the_timeout(self, traces: Traces) -> None:
        """on_timeout="partial": the parallel span is ERROR/timeout, the flow span UNSET."""
        flow = Flow(
            "f",
            Parallel(
                "p", [Request("a", "fast"), Request("b", "slow")], timeout=0.1, on_timeout="partial"
            ),
        )
        result = await traces.executor().run(flow)
        assert result["p"] == {"a": "fast"}
        spans = traces.by_name()
        par = spans["parallel p"]
        assert par.status.status_code is StatusCode.ERROR
        assert attrs(par)["error.type"] == "timeout"
        assert [e.name for e in par.events] == ["stepwatch.timeout", "exception"]
        assert spans["flow f"].status.status_code is StatusCode.UNSET
        assert attrs(spans["flow f"])["stepwatch.step.outcome"] == "success"

    async def test_fallback_is_a_timeout_on_the_span(self, traces: Traces) -> None:
        """A step that timed out and returned its fallback is ERROR/timeout on its span."""
        flow = Flow("f", Request("r", "slow", timeout=0.05, fallback="cached"))
        result = await traces.executor().run(flow)
        assert result["r"] == "cached"
        span = traces.by_name()["request r"]
        assert span.status.status_code is StatusCode.ERROR
        assert attrs(span)["error.type"] == "timeout"
        assert attrs(span)["stepwatch.step.outcome"] == "timeout"

    async def test_flow_timeout(self, traces: Traces) -> None:
        """The whole-flow deadline: the flow span is ERROR/timeout, the step it cut off is
        a cancellation with cause deadline."""
        flow = Flow("f", [Request("a", "fast"), Request("b", "slow")], timeout=0.1)
        with pytest.raises(FlowTimeoutError):
            await traces.executor().run(flow)
        spans = traces.by_name()
        root = spans["flow f"]
        assert root.status.status_code is StatusCode.ERROR
        assert attrs(root)["error.type"] == "timeout"
        assert attrs(root)["stepwatch.step.timeout"] == 0.1
        (event,) = [e for e in root.events if e.name == "stepwatch.timeout"]
        assert tuple(event.attributes["stepwatch.pending"]) == ("b",)  # type: ignore[arg-type,index]
        b = attrs(spans["request b"])
        assert b["stepwatch.step.outcome"] == "cancellation"
        assert b["stepwatch.cancel.cause"] == "deadline"

    async def test_queued_children_never_started_are_counted(self, traces: Traces) -> None:
        """With max_concurrency, children that never started have no span but are counted
        as cancelled and named as pending."""
        flow = Flow(
            "f",
            Parallel(
                "p",
                [Request(f"c{i}", "slow") for i in range(5)],
                timeout=0.1,
                max_concurrency=2,
            ),
        )
        with pytest.raises(StepTimeoutError):
            await traces.executor().run(flow)
        spans = traces.by_name()
        assert {n for n in spans if n.startswith("request")} == {"request c0", "request c1"}
        par = spans["parallel p"]
        assert attrs(par)["stepwatch.parallel.children.cancelled"] == 5
        (event,) = [e for e in par.events if e.name == "stepwatch.timeout"]
        assert event.attributes is not None
        assert event.attributes["stepwatch.pending.count"] == 5

    async def test_pending_names_are_capped(self, traces: Traces) -> None:
        """max_pending_names bounds the stepwatch.pending list; the count stays exact."""
        flow = Flow("f", Parallel("p", [Request(f"c{i}", "slow") for i in range(10)], timeout=0.05))
        ex = traces.executor(tracing=TracingConfig(max_pending_names=3))
        with pytest.raises(StepTimeoutError):
            await ex.run(flow)
        (event,) = [e for e in traces.by_name()["parallel p"].events if e.name != "exception"]
        assert event.attributes is not None
        assert tuple(event.attributes["stepwatch.pending"]) == ("c0", "c1", "c2")  # type: ignore[arg-type]
        assert event.attributes["stepwatch.pending.count"] == 10


class TestFailures:
    async def test_failure_recorded_once_where_it_arose(self, traces: Traces) -> None:
        """A handler's exception is recorded on its request span only; ancestors are ERROR
        with the stepwatch error type; fail-fast siblings are cancellations."""
        flow = Flow(
            "f",
            Sequence("seq", Parallel("p", [Request("bad", "boom"), Request("other", "slow")])),
        )
        with pytest.raises(StepFailedError):
            await traces.executor().run(flow)
        spans = traces.by_name()
        bad = spans["request bad"]
        assert bad.status.status_code is StatusCode.ERROR
        assert attrs(bad)["error.type"] == f"{Boom.__module__}.Boom"
        assert attrs(bad)["stepwatch.step.outcome"] == "failure"
        assert "backend exploded" in (bad.status.description or "")
        other = attrs(spans["request other"])
        assert other["stepwatch.step.outcome"] == "cancellation"
        assert other["stepwatch.cancel.cause"] == CancelCause.SIBLING_FAILURE.value
        assert spans["request other"].status.status_code is StatusCode.UNSET
        for name in ("parallel p", "sequence seq", "flow f"):
            assert spans[name].status.status_code is StatusCode.ERROR, name
            assert attrs(spans[name])["error.type"] == "stepwatch.StepFailedError", name
        assert exception_events(traces.spans()) == [("request bad", f"{Boom.__module__}.Boom")]

    async def test_builtin_exception_type_is_unqualified(self, traces: Traces) -> None:
        """error.type of a builtin exception is its bare class name."""

        async def bad(params: Any) -> Any:
            raise KeyError("missing")

        ex = traces.executor(handlers={"bad": bad})
        with pytest.raises(StepFailedError):
            await ex.run(Flow("f", Request("r", "bad")))
        assert attrs(traces.by_name()["request r"])["error.type"] == "KeyError"


class TestCancellation:
    async def test_every_span_ended_after_a_timeout(self, traces: Traces) -> None:
        """Nested timeouts and cut-off subtrees end every span that was started."""
        flow = Flow(
            "f",
            Parallel(
                "outer",
                [
                    Sequence("s1", [Request("s1a", "fast"), Request("s1b", "slow")]),
                    Parallel("inner", [Request(f"i{n}", "slow") for n in range(20)]),
                    Request("quick", "fast"),
                ],
                timeout=0.1,
            ),
        )
        with pytest.raises(StepTimeoutError):
            await traces.executor().run(flow)
        assert traces.tracker.unended() == []
        assert len(traces.tracker.started) == len(traces.spans()) == 27

    async def test_outside_cancel_is_not_an_error(self, traces: Traces) -> None:
        """A cancel from the caller ends every span as a cancellation with cause outside."""
        flow = Flow("f", Parallel("p", [Request("a", "slow"), Request("b", "slow")]))
        with anyio.move_on_after(0.05):
            await traces.executor().run(flow)
        assert traces.tracker.unended() == []
        spans = traces.by_name()
        assert len(spans) == 4
        for span in spans.values():
            assert span.status.status_code is StatusCode.UNSET
            assert attrs(span)["stepwatch.step.outcome"] == "cancellation"
            assert attrs(span)["stepwatch.cancel.cause"] == "outside"


# -- detached children -------------------------------------------------------------------


class TestDetached:
    @pytest.mark.parametrize(
        ("step_mode", "default"),
        [
            pytest.param("detached", "nested", id="per-step"),
            pytest.param(None, "detached", id="executor-default"),
        ],
    )
    async def test_one_trace_per_child_linked_to_the_parallel_span(
        self, traces: Traces, step_mode: Any, default: Any
    ) -> None:
        """Each child starts its own trace whose root links to the parallel span."""
        flow = Flow(
            "f",
            Parallel(
                "fan",
                [
                    Request("a", "fast"),
                    Request("b", "slow"),
                    Sequence("c", [Request("c1", "fast")]),
                ],
                timeout=0.1,
                on_timeout="partial",
                trace_children=step_mode,
            ),
        )
        ex = traces.executor(tracing=TracingConfig(trace_children=default))
        await ex.run(flow)
        spans = traces.by_name()
        fan = spans["parallel fan"]
        assert attrs(fan)["stepwatch.parallel.trace_children"] == "detached"
        assert parent_id(fan) == span_id(spans["flow f"])
        children = [spans["request a"], spans["request b"], spans["sequence c"]]
        trace_ids = {trace_id(s) for s in children}
        assert len(trace_ids) == 3
        assert trace_id(fan) not in trace_ids
        for child in children:
            assert child.parent is None
            (link,) = child.links
            assert link.context.trace_id == trace_id(fan)
            assert link.context.span_id == span_id(fan)
        assert attrs(spans["request b"])["stepwatch.cancel.cause"] == "deadline"
        # a detached child's own subtree nests inside its new trace
        c1 = spans["request c1"]
        assert parent_id(c1) == span_id(spans["sequence c"])
        assert trace_id(c1) == trace_id(spans["sequence c"])

    async def test_nested_step_overrides_detached_default(self, traces: Traces) -> None:
        """Parallel(trace_children="nested") wins over a detached executor default."""
        flow = Flow("f", Parallel("p", [Request("a", "fast")], trace_children="nested"))
        await traces.executor(tracing=TracingConfig(trace_children="detached")).run(flow)
        spans = traces.by_name()
        assert parent_id(spans["request a"]) == span_id(spans["parallel p"])
        assert spans["request a"].links == ()


# -- near timeout ------------------------------------------------------------------------


class TestNearTimeout:
    @pytest.mark.parametrize(
        ("handler", "near", "expected"),
        [
            pytest.param("near", 0.8, True, id="90%-default"),
            pytest.param("half", 0.8, False, id="50%-default"),
            pytest.param("half", 0.3, True, id="50%-near-0.3"),
            pytest.param("near", None, False, id="off"),
        ],
    )
    async def test_event_when_most_of_the_budget_was_used(
        self, traces: Traces, handler: str, near: float | None, expected: bool
    ) -> None:
        """A step ending after more than near_timeout of its budget gets an event."""
        handlers = {"near": sleeper(0.09, "x"), "half": sleeper(0.05, "x")}
        ex = traces.executor(handlers=handlers, near_timeout=near)
        await ex.run(Flow("f", Request("r", handler, timeout=0.1)))
        span = traces.by_name()["request r"]
        events = [e for e in span.events if e.name == "stepwatch.near_timeout"]
        assert bool(events) is expected
        assert span.status.status_code is StatusCode.UNSET
        if expected:
            assert events[0].attributes is not None
            ratio = events[0].attributes["stepwatch.step.budget_ratio"]
            assert isinstance(ratio, float)
            assert ratio == pytest.approx(0.9 if handler == "near" else 0.5, abs=0.05)
            assert events[0].attributes["stepwatch.step.timeout"] == 0.1

    async def test_deprecated_tracing_ratio_still_sets_the_span_threshold(
        self, traces: Traces
    ) -> None:
        """TracingConfig(near_timeout_ratio=...) warns and still decides the span event."""
        with pytest.warns(DeprecationWarning, match="near_timeout_ratio is deprecated"):
            config = TracingConfig(near_timeout_ratio=0.3)
        ex = traces.executor(handlers={"half": sleeper(0.05, "x")}, tracing=config)
        await ex.run(Flow("f", Request("r", "half", timeout=0.1)))
        span = traces.by_name()["request r"]
        assert [e.name for e in span.events] == ["stepwatch.near_timeout"]


# -- user executors, config, providers -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Twice(Step):
    """A user step type: runs its child twice, in order."""

    type: ClassVar[str] = "twice"

    child: Step

    def children(self) -> tuple[Step, ...]:
        return (self.child,)


class TwiceExecutor:
    """A user executor with no tracing code at all."""

    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Twice)

    async def execute(self, step: Step, ctx: StepContext) -> list[Any]:
        assert isinstance(step, Twice)
        first = await ctx.run_child(step.child)
        second = await ctx.run_child(step.child)
        return [first.value, second.value]


class TestUserExecutor:
    async def test_registered_executor_is_traced_for_free(self, traces: Traces) -> None:
        """A user step type gets its span, and its children nest under it."""
        ex = traces.executor()
        ex.register(Twice, TwiceExecutor())
        result = await ex.run(Flow("f", Twice("twice-it", Request("r", "fast"))))
        assert result["twice-it"] == ["fast", "fast"]
        spans = traces.spans()
        (user,) = [s for s in spans if s.name == "twice twice-it"]
        assert attrs(user)["stepwatch.step.type"] == "twice"
        assert attrs(user)["stepwatch.step.outcome"] == "success"
        children = [s for s in spans if s.name == "request r"]
        assert len(children) == 2
        assert {parent_id(s) for s in children} == {span_id(user)}


class TestConfig:
    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({"near_timeout_ratio": 0}, id="ratio-0"),
            pytest.param({"near_timeout_ratio": 1.5}, id="ratio-1.5"),
            pytest.param({"near_timeout_ratio": math.nan}, id="ratio-nan"),
            pytest.param({"near_timeout_ratio": True}, id="ratio-bool"),
            pytest.param({"trace_children": "flat"}, id="mode"),
            pytest.param({"max_pending_names": -1}, id="pending"),
        ],
    )
    @pytest.mark.filterwarnings("ignore:TracingConfig.near_timeout_ratio is deprecated")
    def test_bad_values_are_rejected(self, kwargs: dict[str, Any]) -> None:
        """TracingConfig rejects out-of-range values naming the field."""
        with pytest.raises(ValidationError) as info:
            TracingConfig(**kwargs)
        assert info.value.field == f"TracingConfig.{next(iter(kwargs))}"

    async def test_tracing_off_makes_no_spans(self, traces: Traces) -> None:
        """tracing=False: not a single span, even with a provider given."""
        ex = traces.executor(tracing=False)
        await ex.run(Flow("f", Parallel("p", [Request("a", "fast"), Request("b", "fast")])))
        assert traces.spans() == []
        assert traces.tracker.started == {}

    async def test_global_noop_provider_is_harmless(self) -> None:
        """With no provider given and no SDK installed globally, flows run unchanged."""
        assert not trace.get_current_span().is_recording()
        ex = FlowExecutor(handlers=HANDLERS, metrics=False, logging=False)
        result = await ex.run(Flow("f", Parallel("p", [Request("a", "fast")])))
        assert result["a"] == "fast"


class TestCost:
    async def test_static_attributes_built_once_and_dropped_with_the_flow(
        self, traces: Traces
    ) -> None:
        """The per-step attribute cache is filled once per definition and freed with the flow."""

        ex = traces.executor()
        flow = Flow("f", Parallel("p", [Request("a", "fast"), Request("b", "fast")]))
        for _ in range(3):
            await ex.run(flow)
        tracing = ex._instrumentation.tracing  # type: ignore[union-attr]
        assert len(tracing.static.cache) == 4  # flow root, parallel, two children
        runs = [s for s in traces.spans() if s.name == "request a"]
        assert len(runs) == 3
        assert all(attrs(s) == attrs(runs[0]) for s in runs)
        del flow
        gc.collect()
        assert len(tracing.static.cache) == 0
