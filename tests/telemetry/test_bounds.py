"""Telemetry that cannot be used to exhaust memory: bounded series, bounded label values,
bounded copies of exception messages and of lists of children."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stepwatch import (
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Sequence,
    StepFailedError,
    StepTimeoutError,
)
from stepwatch.telemetry import MetricsConfig
from stepwatch.testing import failing, sleeping
from tests.helpers import memory_tracer

MIB = 1 << 20

MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import anyio
    from prometheus_client import CollectorRegistry, generate_latest
    from stepwatch import Flow, FlowExecutor, Parallel, Request

    FLOWS, STEPS, NAME = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

    async def ok(params):
        return 1

    def rss():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024

    async def main():
        registry = CollectorRegistry()
        ex = FlowExecutor(handlers={"ok": ok}, registry=registry, tracing=False, logging=False)
        before = rss()
        for f in range(FLOWS):
            pad = "f" * NAME
            steps = [Request(f"s{f}-{s}-" + "s" * NAME, "ok") for s in range(STEPS)]
            await ex.run(Flow(f"flow{f}-{pad}", Parallel("p", steps)))
        exposition = generate_latest(registry)
        print(json.dumps({"exposition": len(exposition), "rss": rss() - before}))

    anyio.run(main)
    """
)


def measure(flows: int, steps: int, name: int) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(flows), str(steps), str(name)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, int] = json.loads(proc.stdout)
    return result


@pytest.mark.slow
class TestMemoryBounds:
    def test_300_by_300_names_stay_within_the_series_cap(self) -> None:
        """300 flows × 300 distinct step names (90 000 combinations) keep the exposition
        under 16 MiB and the process growth under 120 MiB (the default cap is 2 000
        series; measured 6.4 MiB and 24 MiB)."""
        found = measure(300, 300, 0)
        assert found["exposition"] < 16 * MIB, found
        assert found["rss"] < 120 * MIB, found

    def test_one_mebibyte_names_are_cut(self) -> None:
        """Flow and step names of 1 MiB each make an exposition under 256 KiB (measured
        72 KiB)."""
        found = measure(2, 2, MIB)
        assert found["exposition"] < 256 * 1024, found
        assert found["rss"] < 100 * MIB, found


class TestSeriesCap:
    @pytest.mark.anyio
    async def test_new_series_beyond_the_cap_go_to_other_with_one_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With max_series=5, the 6th and later (flow, step) pairs are recorded under
        _other, the overflow is counted, and one warning says so."""
        caplog.set_level(logging.WARNING, logger="stepwatch")
        registry = CollectorRegistry()
        ex = FlowExecutor(
            handlers={"ok": sleeping(0, 1)},
            registry=registry,
            metrics=MetricsConfig(max_series=5),
            tracing=False,
        )
        await ex.run(Flow("f", Parallel("p", [Request(f"s{i}", "ok") for i in range(20)])))
        steps = {
            s.labels["step"]
            for m in registry.collect()
            if m.name == "stepwatch_step_duration_seconds"
            for s in m.samples
        }
        assert len(steps) <= 6 and "_other" in steps
        warned = [r for r in caplog.records if getattr(r, "event", "") == "metrics.series_overflow"]
        assert len(warned) == 1
        metrics = ex._instrumentation.metrics.metrics  # type: ignore[union-attr]
        assert metrics.series_overflowed >= 15

    @pytest.mark.anyio
    async def test_long_names_keep_distinct_series(self) -> None:
        """Two 10 000-character step names sharing their first 9 000 characters stay two
        series, each label at most 128 characters."""
        registry = CollectorRegistry()
        ex = FlowExecutor(handlers={"ok": sleeping(0, 1)}, registry=registry, tracing=False)
        a, b = "x" * 9_000 + "a" * 1_000, "x" * 9_000 + "b" * 1_000
        await ex.run(Flow("f", Parallel("p", [Request(a, "ok"), Request(b, "ok")])))
        steps = {
            s.labels["step"]
            for m in registry.collect()
            if m.name == "stepwatch_step_duration_seconds"
            for s in m.samples
        }
        long = {s for s in steps if s.startswith("xxx")}
        assert len(long) == 2
        assert all(len(s) <= 128 for s in steps)


HUGE = "m" * (10 * MIB)


@pytest.mark.anyio
class TestExceptionCopies:
    async def test_a_ten_mebibyte_message_is_copied_nowhere_in_full(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 10 MiB exception message reaches the caller's error, the exception event, the
        log event and the span statuses cut to about 1 KiB; ancestors name the child."""
        caplog.set_level(logging.WARNING, logger="stepwatch")
        provider, exporter = memory_tracer()
        ex = FlowExecutor(
            handlers={"boom": failing(ValueError(HUGE))},
            tracer_provider=provider,
            registry=CollectorRegistry(),
        )
        flow = Flow("f", Sequence("outer", [Parallel("p", [Request("bad", "boom")])]))
        with pytest.raises(StepFailedError) as info:
            await ex.run(flow)
        assert len(str(info.value)) < 2_000
        assert "more characters" in str(info.value)
        spans = {s.name: s for s in exporter.get_finished_spans()}
        for span in spans.values():
            assert len(span.status.description or "") < 1_200
            for event in span.events:
                assert len(json.dumps(dict(event.attributes or {}))) < 40_000
        bad = spans["request bad"]
        assert "mmmm" in (bad.status.description or "")
        for name in ("parallel p", "sequence outer", "flow f"):
            assert "mmmm" not in (spans[name].status.description or ""), name
            assert "'bad'" in (spans[name].status.description or ""), name
        (event,) = [e for e in bad.events if e.name == "exception"]
        assert event.attributes is not None
        assert len(str(event.attributes["exception.message"])) < 1_100
        logged = [r for r in caplog.records if getattr(r, "event", "") == "step.failed"]
        assert len(logged) == 1 and len(getattr(logged[0], "error", "")) < 1_100
        assert len(logged[0].getMessage()) < 3_000

    async def test_a_thousand_pending_children_are_listed_as_a_few_and_a_count(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The timeout error and the log event of a group with 1 000 pending children name
        the first ten and say how many more."""
        caplog.set_level(logging.WARNING, logger="stepwatch")
        ex = FlowExecutor(handlers={"slow": sleeping(10)}, metrics=False, tracing=False)
        children = [Request(f"child-{i}", "slow") for i in range(1000)]
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(Flow("f", Parallel("p", children, timeout=0.05)))
        message = str(info.value)
        assert len(message) < 1_000
        assert "and 990 more" in message
        assert len(info.value.pending) == 1000  # the full list stays on the error itself
        (record,) = [r for r in caplog.records if getattr(r, "event", "") == "step.timeout"]
        found: Any = record
        assert len(found.pending) == 10 and found.pending_count == 1000
