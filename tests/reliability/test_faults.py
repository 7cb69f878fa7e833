"""Fault injection: children and integrations that misbehave, and what the user gets.

Each test states the user-visible result (an error, a clear log, a bounded delay) and
checks that nothing is lost: every child has an outcome, finished results are kept.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry, Counter
from structlog.testing import capture_logs

from stepwatch import (
    CancelCause,
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Status,
    StepTimeoutError,
)
from stepwatch.testing import OutcomeRecorder, sleeping
from tests.helpers import memory_tracer

pytestmark = pytest.mark.anyio

OFF: dict[str, Any] = {"tracing": False, "metrics": False, "logging": False}


def _provider(exporter: Any, *, batch: bool = False) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider()
    if batch:
        processor: Any = BatchSpanProcessor(
            exporter, max_queue_size=16, max_export_batch_size=4, schedule_delay_millis=1
        )
    else:
        processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider


def _fan(n: int = 3, *, timeout: float = 0.05, extra: tuple[Any, ...] = ()) -> Flow:
    children = [Request("fast", "fast"), *extra, *(Request(f"slow{i}", "slow") for i in range(n))]
    return Flow("faults", [Parallel("group", children, timeout=timeout)])


class TestStubbornChildren:
    """Children that do not stop when cancelled."""

    @pytest.mark.virtual_time
    async def test_child_swallowing_cancellation_is_cancelled_again_at_its_next_await(
        self,
    ) -> None:
        """A child that catches the cancel and awaits again is re-cancelled at once: no delay."""
        attempts = []

        async def swallow(params: Any) -> str:
            while True:
                try:
                    await anyio.sleep(10)
                except anyio.get_cancelled_exc_class():
                    attempts.append(anyio.current_time())
                    if len(attempts) > 3:
                        raise
                    continue  # swallow it and keep going

        recorder = OutcomeRecorder()
        ex = FlowExecutor(
            handlers={"fast": sleeping(0.01, "f"), "slow": sleeping(10), "swallow": swallow},
            hooks=[recorder],
            **OFF,
        )
        start = anyio.current_time()
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(_fan(extra=(Request("stubborn", "swallow"),)))
        assert anyio.current_time() - start == pytest.approx(0.05, abs=0.03)
        assert len(attempts) == 4  # anyio cancellation is level-triggered
        assert info.value.partial == {"fast": "f"}
        assert recorder["stubborn"].cause is CancelCause.DEADLINE

    @pytest.mark.virtual_time
    async def test_child_shielding_itself_delays_the_group_by_exactly_its_extra_work(
        self,
    ) -> None:
        """A child that shields 0.3 s of work after the cancel makes the group late by that
        much (structured concurrency waits for it); its late value is kept on its outcome,
        with the overrun, but is not a result."""

        async def shielded(params: Any) -> str:
            try:
                await anyio.sleep(10)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.3)
                return "late but done"
            return "never"

        recorder = OutcomeRecorder()
        ex = FlowExecutor(
            handlers={"fast": sleeping(0.01, "f"), "slow": sleeping(10), "shield": shielded},
            hooks=[recorder],
            **OFF,
        )
        start = anyio.current_time()
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(_fan(extra=(Request("stubborn", "shield"),)))
        elapsed = anyio.current_time() - start
        assert elapsed == pytest.approx(0.35, abs=0.05)  # deadline + the shielded work
        assert info.value.partial == {"fast": "f"}
        assert "stubborn" in info.value.pending
        stubborn = recorder["stubborn"]
        assert stubborn.status is Status.CANCELLED and stubborn.cause is CancelCause.DEADLINE
        assert stubborn.value == "late but done"
        assert stubborn.overrun == pytest.approx(0.3, abs=0.05)
        assert [recorder[f"slow{i}"].cause for i in range(3)] == [CancelCause.DEADLINE] * 3

    @pytest.mark.virtual_time
    async def test_child_raising_in_its_own_cleanup_is_reported_with_its_error(self) -> None:
        """A child whose cleanup raises while being cut off: the user gets the group's
        StepTimeoutError; the child is cut off and its cleanup error kept in its outcome."""

        async def bad_cleanup(params: Any) -> None:
            try:
                await anyio.sleep(10)
            finally:
                raise OSError("cleanup failed")

        recorder = OutcomeRecorder()
        ex = FlowExecutor(
            handlers={"fast": sleeping(0.01, "f"), "slow": sleeping(10), "bad": bad_cleanup},
            hooks=[recorder],
            **OFF,
        )
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(_fan(extra=(Request("bad", "bad"),)))
        error = info.value
        assert error.step_name == "group"
        assert error.partial == {"fast": "f"}
        bad = error.outcomes["bad"]
        assert bad.status is Status.CANCELLED and bad.cause is CancelCause.DEADLINE
        assert isinstance(bad.error, OSError)
        assert {o.name for o in recorder.outcomes} >= {"fast", "bad", "slow0", "slow1", "slow2"}


class TestBlockingCode:
    """Code that blocks instead of awaiting."""

    async def test_async_handler_blocking_the_loop_delays_the_deadline_by_the_block(
        self,
    ) -> None:
        """An async handler that blocks the event loop delays the group by at most the
        blocking time (no deadline can fire meanwhile); the other children are still cut
        off, and the blocker is named by its overrun, not reported as a success."""

        async def hog(params: Any) -> str:
            time.sleep(0.2)  # the fault being injected
            return "hogged"

        recorder = OutcomeRecorder()
        ex = FlowExecutor(
            handlers={"fast": sleeping(0.01, "f"), "slow": sleeping(10), "hog": hog},
            hooks=[recorder],
            **OFF,
        )
        start = time.perf_counter()
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(_fan(extra=(Request("hog", "hog"),)))
        elapsed = time.perf_counter() - start
        assert 0.2 <= elapsed < 0.2 + 0.15
        # "fast" finished its sleep during the block; whether its wake-up or the deadline
        # is processed first after the block is up to the event loop
        assert set(info.value.pending) - {"fast"} == {"hog", "slow0", "slow1", "slow2"}
        hog = recorder["hog"]
        assert hog.status is Status.CANCELLED  # it returned only after the group's deadline
        assert hog.overrun is not None and 0.1 <= hog.overrun < 0.2 + 0.15
        assert "hog (+" in str(info.value)

    async def test_sync_handler_blocking_is_abandoned_at_the_deadline_and_counted(self) -> None:
        """A blocking sync handler runs in a worker thread: the group ends on time, the thread
        is counted as abandoned while it runs and as finished late when it ends."""
        release = threading.Event()

        def stuck(params: Any) -> str:
            release.wait(5)
            return "too late"

        recorder = OutcomeRecorder()
        ex = FlowExecutor(
            handlers={"fast": sleeping(0.01, "f"), "slow": sleeping(10), "stuck": stuck},
            hooks=[recorder],
            **OFF,
        )
        start = time.perf_counter()
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(_fan(extra=(Request("stuck", "stuck"),)))
        # the group ends at its 50 ms deadline, not when the thread does (5 s): real time,
        # so a generous margin
        assert time.perf_counter() - start < 0.05 + 0.45
        assert info.value.partial == {"fast": "f"}
        assert "stuck" in info.value.pending
        assert recorder["stuck"].cause is CancelCause.DEADLINE
        assert ex.workers.abandoned == 1
        release.set()
        with anyio.fail_after(5):
            while ex.workers.abandoned:
                await anyio.sleep(0.01)
        assert ex.workers.finished_late_total == 1


class TestBrokenTelemetry:
    """Exporters, processors and registries that fail must never reach the flow."""

    async def test_raising_exporter_changes_nothing(self, caplog: pytest.LogCaptureFixture) -> None:
        """An exporter raising on every export: the same result as without tracing, and the
        SDK's own "Exception while exporting Span" log says what went wrong."""
        from opentelemetry.sdk.trace.export import SpanExporter

        class Raising(SpanExporter):
            def export(self, spans: Any) -> Any:
                raise RuntimeError("collector down")

        provider = _provider(Raising())
        handlers = {"fast": sleeping(0.01, "f"), "slow": sleeping(0.02, "s")}
        flow = _fan(timeout=1)
        plain = await FlowExecutor(handlers=handlers, **OFF).run(flow)
        traced = await FlowExecutor(
            handlers=handlers, tracer_provider=provider, metrics=False, logging=False
        ).run(flow)
        assert dict(traced) == dict(plain)
        assert "Exception while exporting Span" in caplog.text
        provider.shutdown()

    async def test_hanging_exporter_with_full_queue_never_slows_a_flow(self) -> None:
        """An exporter that hangs behind a BatchSpanProcessor with a tiny queue: spans are
        dropped by the SDK, the flow finishes on time with its full result."""
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        unblock = threading.Event()

        class Hanging(SpanExporter):
            def export(self, spans: Any) -> Any:
                unblock.wait(10)
                return SpanExportResult.SUCCESS

        provider = _provider(Hanging(), batch=True)
        ex = FlowExecutor(
            handlers={"fast": sleeping(0, "f"), "slow": sleeping(0, "s")},
            tracer_provider=provider,
            metrics=False,
            logging=False,
        )
        flow = _fan(n=100, timeout=5)
        start = time.perf_counter()
        for _ in range(5):
            result = await ex.run(flow)
            assert len(result["group"]) == 101
        assert time.perf_counter() - start < 2.0
        unblock.set()
        provider.shutdown()

    async def test_registry_clash_logs_and_runs_without_metrics(self) -> None:
        """A registry where stepwatch's metric names are taken by someone else: one
        ``metrics.unavailable`` warning, and flows run unchanged (just without metrics)."""
        registry = CollectorRegistry()
        Counter("stepwatch_step_timeouts", "someone else's metric", registry=registry)
        with capture_logs() as logs:
            ex = FlowExecutor(
                handlers={"fast": sleeping(0, "f"), "slow": sleeping(0, "s")},
                registry=registry,
                tracing=False,
                logging=False,
            )
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["metrics.unavailable"]
        result = await ex.run(_fan(timeout=1))
        assert result["group"]["fast"] == "f"
        names = {m.name for m in registry.collect()}
        assert names == {"stepwatch_step_timeouts"}

    async def test_two_executors_on_one_registry_share_the_metrics(self) -> None:
        """Two executors on one registry do not clash: both count into the same series."""
        registry = CollectorRegistry()
        handlers = {"fast": sleeping(0, "f"), "slow": sleeping(0, "s")}
        a = FlowExecutor(handlers=handlers, registry=registry, tracing=False, logging=False)
        b = FlowExecutor(handlers=handlers, registry=registry, tracing=False, logging=False)
        flow = _fan(timeout=1)
        await a.run(flow)
        await b.run(flow)
        count = registry.get_sample_value(
            "stepwatch_step_duration_seconds_count",
            {"flow": "faults", "step": "fast", "step_type": "request", "outcome": "success"},
        )
        assert count == 2


class TestConcurrencyAndCancellation:
    """Many runs at once and cancellation from outside."""

    @pytest.mark.virtual_time
    async def test_ten_thousand_concurrent_runs_share_one_executor(self) -> None:
        """10 000 concurrent runs on one executor: each gets its own values and outcomes,
        none is lost or mixed up with another's."""

        async def echo(params: Any) -> Any:
            await anyio.sleep(0.01)
            return params

        # no timing-dependent cut-off (a loaded loop makes real-time deadlines expire
        # early): the quorum cancels the slow child of every run
        flow = Flow(
            "many",
            [
                Parallel(
                    "group",
                    [
                        Request("mine", "echo", lambda ctx: ctx.input),
                        Request("slow", "slow"),
                    ],
                    timeout=60,
                    min_successes=1,
                )
            ],
        )
        ex = FlowExecutor(handlers={"echo": echo, "slow": sleeping(10)}, **OFF)
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            results[i] = await ex.run(flow, i, run_id=f"run-{i}")

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(10_000):
                    tg.start_soon(one, i)
        assert len(results) == 10_000
        for i, result in results.items():
            assert result.run_id == f"run-{i}"
            assert result["mine"] == i
            assert result.output == {"mine": i}
            assert result.outcomes["slow"].cause is CancelCause.QUORUM_MET

    @pytest.mark.virtual_time
    async def test_outside_cancel_mid_fan_out_is_not_a_timeout(self) -> None:
        """Cancelling the caller mid-fan-out propagates the cancellation: no timeout error,
        children cancelled with cause outside, no timeout counted, every span ended."""
        provider, exporter = memory_tracer()
        registry = CollectorRegistry()
        recorder = OutcomeRecorder()
        started = 0

        async def slow(params: Any) -> None:
            nonlocal started
            started += 1
            await anyio.sleep(1)

        ex = FlowExecutor(
            handlers={"fast": sleeping(0.01, "f"), "slow": slow},
            hooks=[recorder],
            tracer_provider=provider,
            registry=registry,
            logging=False,
        )
        flow = _fan(n=200, timeout=10)
        async with anyio.create_task_group() as tg:

            async def caller() -> None:
                await ex.run(flow)
                raise AssertionError("the run was not cancelled")

            tg.start_soon(caller)
            # mid-fan-out: every child running, "fast" done (a fixed 50 ms sleep raced the
            # start of 200 traced children on a loaded machine or under coverage)
            with anyio.fail_after(5):
                while started < 200 or "fast" not in recorder.by_name():
                    await anyio.sleep(0.005)
            tg.cancel_scope.cancel()
        assert recorder["fast"].status is Status.SUCCEEDED
        slow = [recorder[f"slow{i}"] for i in range(200)]
        assert {(o.status, o.cause) for o in slow} == {(Status.CANCELLED, CancelCause.OUTSIDE)}
        assert recorder["group"].cause is CancelCause.OUTSIDE
        assert not recorder.with_status(Status.TIMED_OUT)
        spans = exporter.get_finished_spans()
        assert len(spans) == 1 + 1 + 1 + 200  # flow, group, fast, slow children
        assert not [s for s in spans if s.attributes.get("stepwatch.step.outcome") == "timeout"]
        timeouts = [
            s
            for m in registry.collect()
            if m.name == "stepwatch_step_timeouts"
            for s in m.samples
            if s.name.endswith("_total")
        ]
        assert sum(s.value for s in timeouts) == 0
        cancelled = registry.get_sample_value(
            "stepwatch_parallel_children_cancelled_total",
            {"flow": "faults", "step": "group", "cause": "outside"},
        )
        assert cancelled == 200
        provider.shutdown()
