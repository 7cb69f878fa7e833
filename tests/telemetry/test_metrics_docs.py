"""docs/telemetry.md says what the library really exports: every metric with its type and
labels (and how many there are), every series suffix (``_created`` included), what an
expired deadline looks like in a trace, the spans' status descriptions, and the
near-timeout setting."""

from __future__ import annotations

import functools
import inspect
import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from stepwatch import (
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Sequence,
    StepFailedError,
    StepTimeoutError,
    Transform,
)
from stepwatch.telemetry._metrics_config import DEFAULT_BUDGET_RATIO_BUCKETS, METRIC_NAMES
from stepwatch.testing import blocking, sleeping
from tests.helpers import memory_tracer

ROOT = Path(__file__).resolve().parents[2]
TELEMETRY = (ROOT / "docs" / "telemetry.md").read_text()


fast = sleeping(0.01, "ok")
slow = sleeping(10, "late")
hog = blocking(0.02, "late")  # holds the event loop past its 10 ms deadline: an overrun


def sync_blocking(params: Any) -> str:
    time.sleep(0.1)  # a sync handler: abandoned at the deadline, finishes late
    return "late"


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """{metric: (type, labels)} from the table under "### The metrics"."""
    section = TELEMETRY.split("### The metrics", 1)[1].split("###", 1)[0]
    rows = re.findall(r"^\| `(stepwatch_\w+)` \| (\w+) \| ([^|]+) \|", section, flags=re.M)
    return {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


@functools.cache
def exported_registry() -> CollectorRegistry:
    """A registry after one timed-out run with a flow deadline and an overrun (every
    metric has series). Made once: the tests only read it."""
    registry = CollectorRegistry()
    handlers = {"fast": fast, "slow": slow, "blocking": sync_blocking, "hog": hog}
    ex = FlowExecutor(handlers=handlers, registry=registry, tracing=False)
    children = [
        Request("a", "fast"),
        Request("b", "slow"),
        Request("c", "blocking"),
        Request("d", "hog", timeout=0.01, fallback=None),
    ]
    flow = Flow("docs", [Parallel("p", children, timeout=0.05)], timeout=5)
    with pytest.raises(StepTimeoutError):
        anyio.run(ex.run, flow)
    return registry


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    """The metrics table lists exactly the registered metrics, with their real types and
    label names."""
    registry = exported_registry()
    real: dict[str, tuple[str, set[str]]] = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        real[name] = (family.type, labels)
    assert set(real) == set(METRIC_NAMES)
    assert documented_metrics() == real


def test_the_metric_count_is_right() -> None:
    """The sentence counting the metrics (per step and per flow run) counts every one."""
    words = (
        *("zero", "one", "two", "three", "four", "five", "six"),
        *("seven", "eight", "nine", "ten", "eleven", "twelve"),
    )
    found = re.search(r"records (\w+) metrics \((\w+) per step, (\w+) per flow run\)", TELEMETRY)
    assert found is not None
    total, per_step, per_run = (words.index(word) for word in found.groups())
    flow = sum(name.startswith("stepwatch_flow_") for name in METRIC_NAMES)
    assert (total, per_step, per_run) == (len(METRIC_NAMES), len(METRIC_NAMES) - flow, flow)


@pytest.mark.anyio
async def test_near_timeout_is_documented_as_the_executors_setting() -> None:
    """The docs give FlowExecutor(near_timeout=...) with its real default and its bucket
    edge as exported, and mark TracingConfig.near_timeout_ratio deprecated."""
    default = inspect.signature(FlowExecutor).parameters["near_timeout"].default
    assert f"`FlowExecutor(near_timeout={default})` (the default)" in TELEMETRY
    assert default in DEFAULT_BUDGET_RATIO_BUCKETS  # "the default 0.8 already is one"
    row = re.search(r"^\| `near_timeout_ratio` \| (.*)$", TELEMETRY, flags=re.M)
    assert row is not None and "**deprecated**" in row.group(1)
    example = re.search(r"`near_timeout=([\d.]+)` gives", TELEMETRY)
    assert example is not None
    near = example.group(1)
    assert float(near) not in DEFAULT_BUDGET_RATIO_BUCKETS  # an edge it adds
    registry = CollectorRegistry()
    ex = FlowExecutor(
        handlers={"fast": fast}, registry=registry, tracing=False, near_timeout=float(near)
    )
    await ex.run(Flow("f", Request("a", "fast", timeout=1)))
    ratio = registry.get_sample_value(
        "stepwatch_step_timeout_budget_ratio_bucket",
        {"flow": "f", "step": "a", "step_type": "request", "le": near},
    )
    assert ratio == 1  # the edge is exported (and the 10 ms of 1 s are below it)


def test_every_series_suffix_is_documented() -> None:
    """Each series suffix the exposition really has (``_created`` too) is named on the page."""
    exposition = generate_latest(exported_registry()).decode()
    names = set(re.findall(r"^(stepwatch_\w+?)(?:\{| )", exposition, flags=re.M))
    suffixes = {
        m.group(1) for n in names if (m := re.search(r"(_bucket|_count|_sum|_total|_created)$", n))
    }
    assert suffixes == {"_bucket", "_count", "_sum", "_total", "_created"}
    section = TELEMETRY.split("### The metrics", 1)[1].split("### Labels", 1)[0]
    for suffix in suffixes:
        assert f"`{suffix}`" in section, suffix
    assert "stepwatch_step_timeouts_created" in section  # counters have them as well


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_one_expired_deadline_in_a_trace_is_as_documented(anyio_backend: str) -> None:
    """For one expired deadline exactly one span has error.type=timeout and the timeout
    event; the ERROR spans are that span and the ancestors the error passed through; the
    cut-off child is UNSET. The docs say so, and no longer claim a single red span."""
    provider, exporter = memory_tracer()
    ex = FlowExecutor(handlers={"fast": fast, "slow": slow}, tracer_provider=provider)
    flow = Flow(  # the tree drawn in docs/telemetry.md
        "checkout",
        [
            Transform("query", lambda ctx: ctx.input, inline=True),
            Sequence(
                "load",
                [
                    Parallel(
                        "enrich",
                        [
                            Request("inventory", "fast"),
                            Request("pricing", "fast"),
                            Request("recommendations", "slow"),
                        ],
                        timeout=0.2,
                    )
                ],
            ),
        ],
    )
    with pytest.raises(StepTimeoutError):
        await ex.run(flow, "A-1")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    owners = [
        name
        for name, s in spans.items()
        if (s.attributes or {}).get("error.type") == "timeout"
        and any(e.name == "stepwatch.timeout" for e in s.events)
    ]
    assert owners == ["parallel enrich"]
    red = {name for name, s in spans.items() if s.status.status_code is StatusCode.ERROR}
    assert red == {"parallel enrich", "sequence load", "flow checkout"}
    assert spans["request recommendations"].status.status_code is StatusCode.UNSET
    assert "exactly one red span" not in TELEMETRY
    assert "exactly one span carries `error.type=timeout` and the `stepwatch.timeout` event" in (
        TELEMETRY.replace("\n", " ").replace("**", "")
    )
    decisions = (ROOT / "docs" / "decisions.md").read_text()
    assert "exactly one red span" not in decisions


async def backend_error(params: Any) -> Any:
    raise ValueError("backend exploded")


@pytest.mark.anyio
async def test_status_descriptions_are_as_documented() -> None:
    """The docs quote the real descriptions: `Class: message` where an error arose, the
    step it came from on the ancestors, a parallel step's own name for its children's."""
    paragraph = TELEMETRY.split("*Each exception is recorded once*", 1)[1].split("\n\n", 1)[0]
    arose, ancestor, parallel = re.findall(r'`"([^`]+)"`', paragraph)
    provider, exporter = memory_tracer()
    ex = FlowExecutor(handlers={"boom": backend_error}, tracer_provider=provider)
    a, b = Request("a", "boom"), Request("b", "boom")
    with pytest.raises(StepFailedError):
        await ex.run(Flow("f", Sequence("load", [a])))
    with pytest.raises(StepFailedError):
        await ex.run(Flow("g", Parallel("p", [a, b], fail_fast=False)))
    got = {s.name: s.status.description for s in exporter.get_finished_spans()}
    assert got["request a"] == got["request b"] == arose
    assert got["sequence load"] == got["flow f"] == ancestor
    assert got["parallel p"] == got["flow g"] == parallel


@pytest.mark.anyio
async def test_long_names_in_spans_are_cut_as_documented() -> None:
    """Long flow and step names keep the documented head, then `… (N more characters)`."""
    text = " ".join(TELEMETRY.split("**What is copied from exceptions and lists")[1].split())
    found = re.search(
        r"longer than (\d+) characters keep their first \1 characters, followed "
        r"by `… \(N more characters\)`",
        text,
    )
    assert found is not None
    limit = int(found.group(1))
    provider, exporter = memory_tracer()
    flow, step = "f" * 1_000, "s" * 10_000
    ex = FlowExecutor(handlers={"fast": fast}, tracer_provider=provider, metrics=False)
    await ex.run(Flow(flow, Request(step, "fast")))
    spans = {
        dict(s.attributes or {})["stepwatch.step.type"]: s for s in exporter.get_finished_spans()
    }

    def cut(name: str) -> str:
        return f"{name[:limit]}… ({len(name) - limit} more characters)"

    request = spans["request"]
    assert request.name == cut(f"request {step}")
    assert (request.attributes or {})["stepwatch.step.name"] == cut(step)
    assert (request.attributes or {})["stepwatch.flow.name"] == cut(flow)
    assert spans["flow"].name == cut(f"flow {flow}")
    assert f"`… ({len(step) - limit} more characters)`" in text  # the worked example
