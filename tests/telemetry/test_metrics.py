"""Prometheus metrics: exact samples, exemplars, cancellation, sharing, guard, robustness."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Any

import anyio
import prometheus_client
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import format_span_id, format_trace_id
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.exposition import generate_latest
from structlog.testing import capture_logs

from stepwatch import (
    Flow,
    FlowExecutor,
    FlowTimeoutError,
    Parallel,
    Request,
    Sequence,
    StepFailedError,
    StepTimeoutError,
    ValidationError,
)
from stepwatch.telemetry import MetricsConfig
from stepwatch.telemetry._labels import OTHER, LabelGuard
from stepwatch.telemetry._metrics_config import METRIC_NAMES
from tests.helpers import memory_tracer

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

Key = tuple[str, tuple[tuple[str, str], ...]]


async def fast(params: Any) -> str:
    await anyio.sleep(0.01)
    return "fast"


async def slow(params: Any) -> str:
    await anyio.sleep(10)
    return "slow"


async def boom(params: Any) -> str:
    await anyio.sleep(0.01)
    raise ValueError("backend exploded")


HANDLERS = {"fast": fast, "slow": slow, "boom": boom}


def timed_out_flow(name: str = "checkout") -> Flow:
    return Flow(
        name,
        [Parallel("enrich", [Request("fast", "fast"), Request("slow", "slow")], timeout=0.1)],
    )


def samples(registry: CollectorRegistry) -> dict[Key, float]:
    """Every sample but ``_created`` ones, keyed by (name, sorted labels)."""
    out: dict[Key, float] = {}
    for family in registry.collect():
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def summary(registry: CollectorRegistry) -> dict[Key, float]:
    """The samples without buckets and sums (counts, counters, gauges)."""
    return {k: v for k, v in samples(registry).items() if not k[0].endswith(("_bucket", "_sum"))}


D = "stepwatch_step_duration_seconds"
T = "stepwatch_step_timeouts_total"
B = "stepwatch_step_timeout_budget_ratio"
P = "stepwatch_steps_in_progress"
C = "stepwatch_parallel_children_cancelled_total"
FD = "stepwatch_flow_duration_seconds"
FT = "stepwatch_flow_timeouts_total"


async def test_timed_out_parallel_gives_exactly_the_expected_samples() -> None:
    """A timed-out parallel step and its finished and cancelled children give exactly these."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    with pytest.raises(StepTimeoutError):
        await ex.run(timed_out_flow())
    par = {"flow": "checkout", "step": "enrich", "step_type": "parallel"}
    ok = {"flow": "checkout", "step": "fast", "step_type": "request"}
    cut = {"flow": "checkout", "step": "slow", "step_type": "request"}
    assert summary(registry) == {
        key(f"{D}_count", **par, outcome="timeout"): 1,
        key(f"{D}_count", **ok, outcome="success"): 1,
        key(f"{D}_count", **cut, outcome="cancellation"): 1,
        key(T, **par): 1,
        key(T, **ok): 0,  # requests have a budget (30 s default): their counter starts at 0
        key(T, **cut): 0,
        key(f"{B}_count", **par): 1,
        key(f"{B}_count", **ok): 1,
        key(f"{B}_count", **cut): 0,  # a cancelled step used no budget of its own
        key(P, flow="checkout", step_type="parallel"): 0,
        key(P, flow="checkout", step_type="request"): 0,
        key(C, flow="checkout", step="enrich", cause="deadline"): 1,
        # the run itself: its error passed through it, so a failure (it has no deadline)
        key(f"{FD}_count", flow="checkout", outcome="failure"): 1,
    }
    got = samples(registry)
    assert got[key(f"{D}_bucket", **par, outcome="timeout", le="0.05")] == 0
    assert got[key(f"{D}_bucket", **par, outcome="timeout", le="0.25")] == 1
    assert got[key(f"{D}_bucket", **ok, outcome="success", le="0.1")] == 1
    assert got[key(f"{D}_sum", **par, outcome="timeout")] == pytest.approx(0.1, abs=0.05)
    assert got[key(f"{B}_bucket", **par, le="0.95")] == 0  # it used its whole budget
    assert got[key(f"{B}_bucket", **par, le="1.0")] == 1  # exactly all of it, never more
    assert got[key(f"{B}_sum", **par)] == 1.0
    assert got[key(f"{B}_bucket", **ok, le="0.1")] == 1  # 0.01 s of 30 s


# -- budget use of a timed-out step --------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        Request("p", "slow", timeout=0.1),
        Request("p", "slow", timeout=0.1, fallback="cached"),
        Request("p", "slow", timeout=0.1, retry=2),
        Parallel("p", [Request("a", "slow")], timeout=0.1, on_timeout="partial"),
    ],
    ids=["raise", "fallback", "retried", "partial"],
)
async def test_timed_out_step_uses_exactly_its_whole_budget(step: Any) -> None:
    """A step that timed out is observed at exactly 1.0 budget use, however late it ended."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    with contextlib.suppress(StepTimeoutError):
        await ex.run(Flow("f", [step]))
    labels = {"flow": "f", "step": "p", "step_type": step.type}
    got = samples(registry)
    assert got[key(f"{B}_count", **labels)] == 1
    assert got[key(f"{B}_sum", **labels)] == 1.0
    assert got[key(f"{B}_bucket", **labels, le="0.95")] == 0
    assert got[key(f"{B}_bucket", **labels, le="1.0")] == 1


async def test_late_timeout_overrun_is_in_the_duration_not_the_budget() -> None:
    """A timed-out step that ends late shows the overrun in its duration; budget use is 1.0."""

    async def late(params: Any) -> str:
        with anyio.CancelScope(shield=True):  # ignores its deadline for a while
            await anyio.sleep(0.2)
        await anyio.sleep(10)
        return "never"

    registry = CollectorRegistry()
    blocking = Request("p", "late", timeout=0.05)
    ex = FlowExecutor(handlers={**HANDLERS, "late": late}, registry=registry, tracing=False)
    with pytest.raises(StepTimeoutError):
        await ex.run(Flow("f", [blocking]))
    labels = {"flow": "f", "step": "p", "step_type": "request"}
    got = samples(registry)
    assert got[key(f"{D}_sum", **labels, outcome="timeout")] >= 0.2
    assert got[key(f"{B}_sum", **labels)] == 1.0


# -- flow-level metrics -------------------------------------------------------------------


async def test_flow_deadline_counts_a_flow_timeout() -> None:
    """A whole-flow deadline that expires is one flow timeout and one flow duration with
    outcome timeout; the steps it cut off are cancellations, never step timeouts."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    flow = Flow("checkout", [Request("a", "fast"), Request("b", "slow")], timeout=0.1)
    with pytest.raises(FlowTimeoutError):
        await ex.run(flow)
    got = summary(registry)
    assert got[key(FT, flow="checkout")] == 1
    assert got[key(f"{FD}_count", flow="checkout", outcome="timeout")] == 1
    assert (
        got[
            key(
                f"{D}_count", flow="checkout", step="b", step_type="request", outcome="cancellation"
            )
        ]
        == 1
    )
    assert sum(v for k, v in got.items() if k[0] == T) == 0
    all_samples = samples(registry)
    assert all_samples[key(f"{FD}_sum", flow="checkout", outcome="timeout")] == pytest.approx(
        0.1, abs=0.05
    )
    assert all_samples[key(f"{FD}_bucket", flow="checkout", outcome="timeout", le="0.05")] == 0
    assert all_samples[key(f"{FD}_bucket", flow="checkout", outcome="timeout", le="0.25")] == 1


async def test_flow_outcomes_and_a_zero_timeout_counter() -> None:
    """Each run is one flow observation by outcome; a flow with a deadline has its timeout
    counter from 0, a flow without one has none."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    await ex.run(Flow("ok", [Request("a", "fast")], timeout=5))
    await ex.run(Flow("ok", [Request("a", "fast")], timeout=5))
    await ex.run(Flow("nodeadline", [Request("a", "fast")]))
    with pytest.raises(StepFailedError):
        await ex.run(Flow("bad", [Sequence("s", [Request("x", "boom")])], timeout=5))
    got = summary(registry)
    flow_samples = {k: v for k, v in got.items() if k[0] in (f"{FD}_count", FT)}
    assert flow_samples == {
        key(f"{FD}_count", flow="ok", outcome="success"): 2,
        key(FT, flow="ok"): 0,
        key(f"{FD}_count", flow="nodeadline", outcome="success"): 1,
        key(f"{FD}_count", flow="bad", outcome="failure"): 1,
        key(FT, flow="bad"): 0,
    }


async def test_flow_cancelled_by_its_caller_is_a_cancellation() -> None:
    """A run its caller cancels is a flow cancellation, not a flow timeout."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    with anyio.move_on_after(0.05):
        await ex.run(Flow("shop", [Request("a", "slow")], timeout=1))
    got = summary(registry)
    assert got[key(f"{FD}_count", flow="shop", outcome="cancellation")] == 1
    assert got[key(FT, flow="shop")] == 0


async def test_flow_label_is_guarded() -> None:
    """Flow names beyond max_label_values are recorded as _other in the flow metrics too."""
    registry = CollectorRegistry()
    ex = FlowExecutor(
        handlers=HANDLERS,
        registry=registry,
        tracing=False,
        logging=False,
        metrics=MetricsConfig(max_label_values=1),
    )
    with capture_logs():
        for name in ("a", "b", "c"):
            await ex.run(Flow(name, [Request("s", "fast")], timeout=1))
    got = summary(registry)
    assert got[key(f"{FD}_count", flow="a", outcome="success")] == 1
    assert got[key(f"{FD}_count", flow=OTHER, outcome="success")] == 2
    assert {dict(k[1])["flow"] for k in got if k[0] == FT} == {"a", OTHER}


async def test_flow_exemplar_is_the_flow_span() -> None:
    """Flow duration exemplars carry the trace and span id of the ``flow {name}`` span."""
    provider, exporter = memory_tracer()
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracer_provider=provider)
    await ex.run(Flow("ok", [Request("a", "fast")]))
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "flow ok"]
    found = [
        s.exemplar.labels
        for family in registry.collect()
        for s in family.samples
        if s.name == f"{FD}_bucket" and s.exemplar is not None
    ]
    assert found == [
        {
            "trace_id": format_trace_id(span.context.trace_id),
            "span_id": format_span_id(span.context.span_id),
        }
    ]


# -- cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["move_on_after", "cancel_scope"])
async def test_outside_cancellation_never_counts_as_timeout(how: str) -> None:
    """A run cancelled by its caller records cancellations with cause outside, never timeouts."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    flow = Flow(
        "shop",
        [Parallel("enrich", [Request("a", "slow"), Request("b", "slow")], timeout=5)],
    )
    if how == "move_on_after":
        with anyio.move_on_after(0.05):
            await ex.run(flow)
    else:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ex.run, flow)
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    got = summary(registry)
    assert [v for k, v in got.items() if k[0] == T] == [0, 0, 0]
    outcomes = {dict(k[1])["outcome"] for k in got if k[0] == f"{D}_count"}
    assert outcomes == {"cancellation"}
    assert got[key(C, flow="shop", step="enrich", cause="outside")] == 2
    assert got[key(P, flow="shop", step_type="request")] == 0


async def test_sibling_failure_is_the_cancel_cause() -> None:
    """A fail-fast parallel step counts its cut-off sibling with cause sibling_failure."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    flow = Flow("f", [Parallel("p", [Request("bad", "boom"), Request("s", "slow")])])
    with pytest.raises(StepFailedError):
        await ex.run(flow)
    got = summary(registry)
    assert got[key(C, flow="f", step="p", cause="sibling_failure")] == 1
    assert got[key(f"{D}_count", flow="f", step="bad", step_type="request", outcome="failure")]
    assert got[key(f"{D}_count", flow="f", step="p", step_type="parallel", outcome="failure")]
    assert sum(v for k, v in got.items() if k[0] == T) == 0


@pytest.mark.parametrize(
    ("step", "result"),
    [
        (
            Parallel(
                "p",
                [Request("fast", "fast"), Request("slow", "slow")],
                timeout=0.1,
                on_timeout="partial",
            ),
            {"fast": "fast"},
        ),
        (Request("p", "slow", timeout=0.1, fallback="cached"), "cached"),
    ],
    ids=["partial", "fallback"],
)
async def test_recovered_timeout_still_counts(step: Any, result: Any) -> None:
    """A timeout hidden by partial results or a fallback is still counted as a timeout."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    assert (await ex.run(Flow("f", [step])))["p"] == result
    labels = {"flow": "f", "step": "p", "step_type": step.type}
    got = summary(registry)
    assert got[key(T, **labels)] == 1
    assert got[key(f"{D}_count", **labels, outcome="timeout")] == 1


async def test_quorum_met_is_the_cancel_cause() -> None:
    """A parallel step that reached min_successes counts the rest with cause quorum_met."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    children = [Request("a", "fast"), Request("b", "slow"), Request("c", "slow")]
    await ex.run(Flow("f", [Parallel("p", children, min_successes=1)]))
    got = summary(registry)
    assert got[key(C, flow="f", step="p", cause="quorum_met")] == 2
    assert got[key(f"{D}_count", flow="f", step="p", step_type="parallel", outcome="success")]


async def test_two_executors_share_one_registry() -> None:
    """Executors on one registry register the metrics once and add to the same series."""
    registry = CollectorRegistry()
    first = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    second = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    with capture_logs() as logs:
        third = FlowExecutor(
            handlers=HANDLERS,
            registry=registry,
            tracing=False,
            metrics=MetricsConfig(duration_buckets=(1, 2)),
        )
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["metrics.config_conflict"]
    for ex in (first, second, third):
        with pytest.raises(StepTimeoutError):
            await ex.run(timed_out_flow())
    par = {"flow": "checkout", "step": "enrich", "step_type": "parallel"}
    got = samples(registry)
    assert got[key(T, **par)] == 3
    assert got[key(f"{D}_bucket", **par, outcome="timeout", le="0.25")] == 3


@pytest.mark.parametrize(
    ("options", "conflict"),
    [
        ({"metrics": MetricsConfig(budget_ratio_buckets=(0.5, 1.0))}, True),
        ({"metrics": MetricsConfig(max_label_values=5)}, True),
        ({"metrics": MetricsConfig(max_series=5)}, True),
        ({"metrics": MetricsConfig(max_label_length=16)}, True),
        ({"near_timeout": 0.85}, True),  # a different bucket edge of the budget ratio
        ({"metrics": MetricsConfig(exemplars=False, exemplar_interval=0)}, False),
    ],
    ids=["ratio-buckets", "label-values", "series", "label-length", "near-timeout", "exemplars"],
)
def test_a_registry_keeps_its_first_config(options: dict[str, Any], conflict: bool) -> None:
    """A later executor differing in a fixed option warns (and is ignored); exemplars may."""
    registry = CollectorRegistry()
    FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    with capture_logs() as logs:
        FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False, **options)
    warned = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert warned == (["metrics.config_conflict"] if conflict else [])


async def test_default_registry_takes_many_executors() -> None:
    """Several executors on the default registry never raise "Duplicated timeseries"."""
    labels = {"flow": "default-registry-flow", "step": "enrich", "step_type": "parallel"}
    before = prometheus_client.REGISTRY.get_sample_value(T, labels) or 0
    executors = [FlowExecutor(handlers=HANDLERS, tracing=False) for _ in range(3)]
    for ex in executors:
        with pytest.raises(StepTimeoutError):
            await ex.run(timed_out_flow("default-registry-flow"))
    assert prometheus_client.REGISTRY.get_sample_value(T, labels) == before + 3


async def test_metrics_false_registers_nothing() -> None:
    """With metrics=False the registry stays empty and the flow runs unchanged."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, metrics=False, tracing=False)
    with pytest.raises(StepTimeoutError) as info:
        await ex.run(timed_out_flow())
    assert info.value.partial == {"fast": "fast"}
    assert list(registry.collect()) == []


def test_import_registers_nothing() -> None:
    """Importing stepwatch and building an executor without metrics registers nothing."""
    code = (
        "import stepwatch, prometheus_client as p\n"
        "stepwatch.FlowExecutor(metrics=False)\n"
        "names = [m.name for m in p.REGISTRY.collect()]\n"
        "assert not [n for n in names if n.startswith('stepwatch')], names\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=30)


def test_import_does_not_import_prometheus_client() -> None:
    """Importing stepwatch and building an executor without metrics does not import
    prometheus-client (it is imported when the first metrics are made)."""
    code = (
        "import sys, stepwatch\n"
        "stepwatch.FlowExecutor(metrics=False)\n"
        "assert 'prometheus_client' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=30)


@pytest.fixture
def broken_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every observe/inc/dec/labels call of prometheus-client raises."""

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("metrics backend broken")

    for cls, name in [
        (Histogram, "observe"),
        (Counter, "inc"),
        (Gauge, "inc"),
        (Gauge, "dec"),
    ]:
        monkeypatch.setattr(cls, name, explode)


@pytest.mark.usefixtures("broken_prometheus")
async def test_broken_metrics_never_break_a_flow() -> None:
    """Metric calls that raise leave results and errors exactly as without metrics."""
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    with pytest.raises(StepTimeoutError) as info:
        await ex.run(timed_out_flow())
    assert info.value.partial == {"fast": "fast"}
    assert list(info.value.pending) == ["slow"]
    result = await ex.run(Flow("ok", [Request("fast", "fast")]))
    assert result["fast"] == "fast"


async def test_broken_labels_never_break_a_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``labels()`` that raises (no series at all) leaves the run unchanged."""

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("labels broken")

    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    monkeypatch.setattr(Histogram, "labels", explode)
    monkeypatch.setattr(Gauge, "labels", explode)
    result = await ex.run(Flow("labels-broken", [Request("fast", "fast")]))
    assert result["fast"] == "fast"


class BrokenRegistry(CollectorRegistry):
    def register(self, collector: Any) -> None:
        raise RuntimeError("registry broken")


async def test_unusable_registry_is_logged_and_ignored() -> None:
    """A registry that refuses the metrics logs metrics.unavailable and the flow still runs."""
    with capture_logs() as logs:
        ex = FlowExecutor(handlers=HANDLERS, registry=BrokenRegistry(), tracing=False)
    assert [e["event"] for e in logs] == ["metrics.unavailable"]
    result = await ex.run(Flow("ok", [Request("fast", "fast")]))
    assert result["fast"] == "fast"


async def test_foreign_metric_with_our_name_leaves_the_registry_as_it_was() -> None:
    """A clashing foreign metric makes metrics unavailable without half-registering ours."""
    registry = CollectorRegistry()
    Gauge("stepwatch_steps_in_progress", "someone else's", registry=registry)
    with capture_logs() as logs:
        ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracing=False)
    assert [e["event"] for e in logs] == ["metrics.unavailable"]
    assert [m.name for m in registry.collect()] == ["stepwatch_steps_in_progress"]
    assert (await ex.run(Flow("ok", [Request("fast", "fast")])))["fast"] == "fast"


async def test_label_overflow_goes_to_other_and_is_logged_once() -> None:
    """Beyond max_label_values new step names become _other, with one warning."""
    registry = CollectorRegistry()
    ex = FlowExecutor(
        handlers=HANDLERS,
        registry=registry,
        tracing=False,
        logging=False,
        metrics=MetricsConfig(max_label_values=2),
    )
    flow = Flow("many", [Request(name, "fast") for name in "abcd"])
    with capture_logs() as logs:
        await ex.run(flow)
        await ex.run(flow)
    assert logs == [
        {
            "event": "metrics.label_overflow",
            "log_level": "warning",
            "label": "step",
            "limit": 2,
            "value": "c",
            "replacement": OTHER,
        }
    ]
    counts = {dict(k[1])["step"]: v for k, v in summary(registry).items() if k[0] == f"{D}_count"}
    assert counts == {"a": 2, "b": 2, OTHER: 4}


def test_label_guard_admits_builtin_types_without_counting() -> None:
    """Built-in step types never use up the limit; user types do."""
    guard = LabelGuard("step_type", 1, exempt={"request", "parallel"})
    assert [guard(v) for v in ["request", "mine", "parallel", "theirs", "mine"]] == [
        "request",
        "mine",
        "parallel",
        OTHER,
        "mine",
    ]
    assert (guard.admitted, guard.overflowed) == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration_buckets": ()}, "MetricsConfig.duration_buckets"),
        ({"duration_buckets": (1, 0.5)}, "MetricsConfig.duration_buckets"),
        ({"duration_buckets": (0, 1)}, "MetricsConfig.duration_buckets"),
        ({"duration_buckets": "1,2"}, "MetricsConfig.duration_buckets"),
        ({"budget_ratio_buckets": (0.5, float("nan"))}, "MetricsConfig.budget_ratio_buckets"),
        ({"budget_ratio_buckets": (True,)}, "MetricsConfig.budget_ratio_buckets"),
        ({"max_label_values": 0}, "MetricsConfig.max_label_values"),
        ({"max_label_values": 2.5}, "MetricsConfig.max_label_values"),
        ({"exemplars": "yes"}, "MetricsConfig.exemplars"),
    ],
    ids=["empty", "decreasing", "zero", "string", "nan", "bool", "limit0", "limit-float", "ex"],
)
def test_config_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    """A bad MetricsConfig value raises ValidationError naming the field."""
    with pytest.raises(ValidationError) as info:
        MetricsConfig(**kwargs)
    assert info.value.field == field


def test_config_normalises_buckets_to_tuples() -> None:
    """Buckets given as a list are stored as a tuple of floats, so configs compare equal."""
    config = MetricsConfig(duration_buckets=[0.1, 1, float("inf")])
    assert config.duration_buckets == (0.1, 1.0, float("inf"))
    assert config == MetricsConfig(duration_buckets=(0.1, 1.0, float("inf")))
    assert {0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 30, 60} <= set(MetricsConfig().duration_buckets)


def exemplars_of(registry: CollectorRegistry, step: str) -> list[dict[str, str]]:
    return [
        s.exemplar.labels
        for family in registry.collect()
        for s in family.samples
        if s.name == f"{D}_bucket" and s.labels["step"] == step and s.exemplar is not None
    ]


async def test_exemplar_trace_id_is_the_span_trace_id() -> None:
    """Duration exemplars carry the trace and span id of the step's span."""
    provider, exporter = memory_tracer()
    registry = CollectorRegistry()
    ex = FlowExecutor(handlers=HANDLERS, registry=registry, tracer_provider=provider)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer, pytest.raises(StepTimeoutError):
        await ex.run(timed_out_flow())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    # the step's own span if tracing made one, else the caller's span
    span = spans.get("request fast", spans["outer"])
    expected = {
        "trace_id": format_trace_id(span.context.trace_id),
        "span_id": format_span_id(span.context.span_id),
    }
    assert expected["trace_id"] == format_trace_id(outer.get_span_context().trace_id)
    assert exemplars_of(registry, "fast") == [expected]
    assert len(expected["trace_id"]) == 32 and len(expected["span_id"]) == 16
    assert f'# {{span_id="{expected["span_id"]}",trace_id="{expected["trace_id"]}"}}' in (
        generate_latest(registry).decode()
    )


async def test_no_exemplar_without_a_recording_span_or_when_disabled() -> None:
    """Without a recording span, or with exemplars=False, observations carry no exemplar."""
    provider = TracerProvider()
    plain = CollectorRegistry()
    await FlowExecutor(handlers=HANDLERS, registry=plain, tracing=False).run(
        Flow("ok", [Request("fast", "fast")])
    )
    off = CollectorRegistry()
    ex = FlowExecutor(
        handlers=HANDLERS,
        registry=off,
        tracer_provider=provider,
        metrics=MetricsConfig(exemplars=False),
    )
    with provider.get_tracer("test").start_as_current_span("outer"):
        await ex.run(Flow("ok", [Request("fast", "fast")]))
    assert exemplars_of(plain, "fast") == []
    assert exemplars_of(off, "fast") == []


def test_metric_names_are_exactly_the_registered_ones() -> None:
    """METRIC_NAMES lists exactly the metrics registered, with their types."""
    registry = CollectorRegistry()
    FlowExecutor(registry=registry)
    families = {
        f.name + ("_total" if f.type == "counter" else ""): f.type for f in registry.collect()
    }
    assert families == {
        D: "histogram",
        T: "counter",
        B: "histogram",
        P: "gauge",
        C: "counter",
        "stepwatch_abandoned_workers": "gauge",
        FD: "histogram",
        FT: "counter",
        "stepwatch_step_overrun_seconds_total": "counter",
    }
    assert set(METRIC_NAMES) == set(families)


async def test_in_progress_counts_the_steps_running_now() -> None:
    """While three children wait, the gauge shows them and their parallel step (on every
    thread's count); when they have ended it is back at zero."""
    registry = CollectorRegistry()
    release = anyio.Event()
    waiting = 0

    async def wait(params: Any) -> str:
        nonlocal waiting
        waiting += 1
        await release.wait()
        return "done"

    flow = Flow("live", Parallel("p", [Request(f"c{i}", "wait") for i in range(3)]))
    ex = FlowExecutor(handlers={"wait": wait}, registry=registry, tracing=False)
    seen: dict[str, float | None] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(ex.run, flow)
        while waiting < 3:
            await anyio.sleep(0.001)
        for step_type in ("request", "parallel"):
            seen[step_type] = registry.get_sample_value(P, {"flow": "live", "step_type": step_type})
        release.set()
    assert seen == {"request": 3.0, "parallel": 1.0}
    for step_type in ("request", "parallel"):
        assert registry.get_sample_value(P, {"flow": "live", "step_type": step_type}) == 0.0
