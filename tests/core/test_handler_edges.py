"""Handlers at the edges: sync callables that return awaitables, handlers that raise
cancellation or interrupts of their own. The same outcome on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from stepwatch import (
    CancelCause,
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Sequence,
    Status,
    StepFailedError,
    StepTimeoutError,
    Transform,
)
from stepwatch.testing import OutcomeRecorder, sleeping

from .helpers import quiet

pytestmark = [pytest.mark.anyio]


async def fetch(params: Any) -> str:
    await anyio.sleep(0)
    return f"fetched {params}"


class TestSyncCallablesReturningAwaitables:
    async def test_lambda_around_an_async_function_is_awaited(self) -> None:
        """A sync handler that returns a coroutine has the coroutine's result as its value."""
        flow = Flow("f", Request("r", "x", "p"))
        result = await quiet(handlers={"x": lambda p: fetch(p)}).run(flow)
        assert result["r"] == "fetched p"

    async def test_inline_transform_returning_a_coroutine_is_awaited(self) -> None:
        """An inline sync transform that returns a coroutine has the coroutine's result."""
        flow = Flow("f", Transform("t", lambda ctx: fetch("t"), inline=True))
        result = await quiet().run(flow)
        assert result["t"] == "fetched t"

    async def test_threaded_transform_returning_a_coroutine_is_awaited(self) -> None:
        """A sync transform run in a worker thread that returns a coroutine is awaited on the
        event loop."""
        flow = Flow("f", Transform("t", lambda ctx: fetch("thread")))
        result = await quiet().run(flow)
        assert result["t"] == "fetched thread"


class TestHandlersRaisingCancellationThemselves:
    @staticmethod
    async def fake_cancel(params: Any) -> Any:
        await anyio.sleep(0.01)
        raise asyncio.CancelledError("raised by the handler, nobody cancelled it")

    async def test_in_a_sequence_it_is_a_failure_not_a_cancellation(self) -> None:
        """A handler raising CancelledError without being cancelled fails its step; the
        caller gets StepFailedError, not a cancellation it never asked for."""
        recorder = OutcomeRecorder()
        flow = Flow("f", Sequence("seq", [Request("a", "fake"), Request("b", "ok")]))
        ex = quiet(handlers={"fake": self.fake_cancel, "ok": sleeping(0)}, hooks=[recorder])
        with pytest.raises(StepFailedError) as info:
            await ex.run(flow)
        assert info.value.step_name == "a"
        assert isinstance(info.value.__cause__, asyncio.CancelledError)
        assert recorder["a"].status is Status.FAILED
        assert recorder["b"].cause is CancelCause.SIBLING_FAILURE

    async def test_in_a_parallel_the_child_fails_instead_of_vanishing(self) -> None:
        """In a parallel group such a child is a failure with an outcome; siblings are
        cancelled for sibling_failure."""
        flow = Flow("f", Parallel("g", [Request("a", "fake"), Request("b", "slow")], timeout=5))
        ex = quiet(handlers={"fake": self.fake_cancel, "slow": sleeping(10)})
        with pytest.raises(StepFailedError) as info:
            await ex.run(flow)
        result = info.value.result
        assert result is not None
        assert result.outcomes["a"].status is Status.FAILED
        assert result.outcomes["b"].cause is CancelCause.SIBLING_FAILURE


class Unprintable(Exception):
    """An exception whose __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


class TestExceptionsThatCannotBePrinted:
    @pytest.mark.parametrize("shape", ["request", "parallel"])
    async def test_a_handler_error_whose_str_raises_fails_its_step(self, shape: str) -> None:
        """A handler's exception whose __str__ raises fails its own step like any other
        (StepFailedError with it as __cause__, a placeholder for its message), with
        tracing, metrics and logging on."""
        from prometheus_client import CollectorRegistry
        from structlog.testing import capture_logs

        from tests.helpers import memory_tracer

        async def broken(params: Any) -> Any:
            raise Unprintable()

        provider, exporter = memory_tracer()
        recorder = OutcomeRecorder()
        ex = FlowExecutor(
            handlers={"broken": broken, "ok": sleeping(0)},
            hooks=[recorder],
            tracer_provider=provider,
            registry=CollectorRegistry(),
        )
        step = Request("r", "broken", retry=None)
        flow = Flow("f", step if shape == "request" else Parallel("p", [step]))
        with capture_logs() as logs, pytest.raises(StepFailedError) as caught:
            await ex.run(flow)
        assert isinstance(caught.value.__cause__, Unprintable)
        assert caught.value.step_name == "r"
        assert "str() failed" in str(caught.value)
        assert recorder["r"].status is Status.FAILED
        span = next(s for s in exporter.get_finished_spans() if s.name == "request r")
        assert span.status.description is not None
        assert "str() failed" in span.status.description
        assert any(e["event"] == "step.failed" and e["step"] == "r" for e in logs)
        provider.shutdown()


class TestInterruptsFromChildren:
    @pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
    async def test_interrupt_from_a_parallel_child_reaches_the_caller_bare(
        self, exc_type: type[BaseException]
    ) -> None:
        """KeyboardInterrupt / SystemExit from a parallel child reach the caller unwrapped,
        the child has an outcome and its siblings are cancelled."""

        async def interrupt(params: Any) -> Any:
            await anyio.sleep(0.01)
            raise exc_type()

        recorder = OutcomeRecorder()
        flow = Flow(
            "f",
            Parallel("g", [Request("a", "interrupt"), Request("b", "slow")], timeout=5),
        )
        ex = quiet(handlers={"interrupt": interrupt, "slow": sleeping(10)}, hooks=[recorder])
        with pytest.raises(exc_type):
            await ex.run(flow)
        assert recorder["a"].status is Status.FAILED
        assert isinstance(recorder["a"].error, exc_type)
        assert recorder["b"].status is Status.CANCELLED

    @pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
    @pytest.mark.parametrize("where", ["sequence", "flow"])
    async def test_interrupt_in_a_sequence_closes_the_steps_after_it(
        self, exc_type: type[BaseException], where: str
    ) -> None:
        """KeyboardInterrupt / SystemExit from a step of a sequence (or of a flow's top
        level) reaches the caller bare, and every step after it is cancelled with cause
        sibling_failure, never started."""

        async def interrupt(params: Any) -> Any:
            raise exc_type()

        recorder = OutcomeRecorder()
        steps = [Request("a", "ok"), Request("k", "interrupt"), Request("c", "ok")]
        flow = Flow("f", Sequence("seq", steps) if where == "sequence" else steps)
        ex = quiet(handlers={"interrupt": interrupt, "ok": sleeping(0)}, hooks=[recorder])
        with pytest.raises(exc_type):
            await ex.run(flow)
        assert recorder["a"].status is Status.SUCCEEDED
        assert isinstance(recorder["k"].error, exc_type)
        assert [o.name for o in recorder.outcomes if o.name == "c"] == ["c"]
        assert recorder["c"].status is Status.CANCELLED
        assert recorder["c"].cause is CancelCause.SIBLING_FAILURE
        assert recorder["c"].attempts == 0


@pytest.mark.virtual_time
class TestHandlersRunningSubFlows:
    """A handler may run a sub-flow with its own executor: the sub-flow's error is that
    handler's failure in the outer run, not an error of one of the outer run's steps."""

    def flows(self, recorder: OutcomeRecorder) -> tuple[FlowExecutor, Flow]:
        inner_ex = quiet(handlers={"sleep": sleeping(10)})
        inner = Flow(
            "inner",
            [
                Transform("fast", lambda ctx: "fast", inline=True),
                Request("slowpoke", "sleep", timeout=0.1, retry=None),
            ],
        )

        async def subflow(params: Any) -> Any:
            return (await inner_ex.run(inner)).output

        outer_ex = quiet(handlers={"subflow": subflow}, hooks=[recorder])
        return outer_ex, Flow("outer", [Request("call_sub", "subflow", timeout=10, retry=None)])

    async def test_a_sub_flows_timeout_is_the_handlers_failure(self) -> None:
        """The outer step fails with a StepFailedError naming it, whose cause is the
        sub-flow's StepTimeoutError with the sub-flow's own result intact."""
        recorder = OutcomeRecorder()
        ex, flow = self.flows(recorder)
        with pytest.raises(StepFailedError) as caught:
            await ex.run(flow)
        error = caught.value
        assert error.step_name == "call_sub"
        assert error.result.flow_name == "outer"
        inner_error = error.__cause__
        assert isinstance(inner_error, StepTimeoutError)
        assert inner_error.step_name == "slowpoke"
        assert inner_error.result.flow_name == "inner"
        assert dict(inner_error.result) == {"fast": "fast"}
        assert recorder["call_sub"].status is Status.FAILED

    async def test_its_record_says_the_error_arose_in_the_handlers_step(self) -> None:
        """Telemetry logs and marks the failure on the outer step, with the sub-flow's
        error class as its error.type."""
        recorder = OutcomeRecorder()
        ex, flow = self.flows(recorder)
        with pytest.raises(StepFailedError):
            await ex.run(flow)
        record = next(r for r in recorder.records if r.step.name == "call_sub")
        assert record.arose_here
        assert record.error_type == "stepwatch.StepTimeoutError"
