"""Nested deadlines: the owner of an expired deadline reports it; outside cancels don't."""

from __future__ import annotations

import anyio
import pytest

from stepwatch import (
    CancelCause,
    Delay,
    Flow,
    FlowExecutor,
    FlowTimeoutError,
    Parallel,
    Request,
    Sequence,
    Status,
    StepTimeoutError,
)

from .helpers import Recorder, sleeper

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

HANDLERS = {"fast": sleeper(0.01, "fast"), "slow": sleeper(10, "slow")}


def nested(outer: float, inner: float) -> Flow:
    """parallel(outer) ⊃ sequence ⊃ parallel(inner) ⊃ {fast, slow}."""
    return Flow(
        "nested",
        Parallel(
            "outer",
            [
                Request("sibling", "fast"),
                Sequence(
                    "seq",
                    [
                        Request("before", "fast"),
                        Parallel(
                            "inner",
                            [Request("in_fast", "fast"), Request("in_slow", "slow")],
                            timeout=inner,
                        ),
                        Request("after", "fast"),
                    ],
                ),
            ],
            timeout=outer,
        ),
    )


class TestNestedDeadlines:
    async def test_outer_deadline_beats_looser_inner_timeout(self) -> None:
        """With outer 0.1 s and inner 5 s, the outer step reports the timeout at ~0.1 s."""
        recorder = Recorder()
        ex = FlowExecutor(handlers=HANDLERS, hooks=[recorder])
        start = anyio.current_time()
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(nested(outer=0.1, inner=5))
        assert 0.1 <= anyio.current_time() - start < 0.5
        err = info.value
        assert err.step_name == "outer"
        assert err.timeout == 0.1
        assert err.partial == {"sibling": "fast"}
        assert err.pending == ("seq",)
        seen = recorder.by_name()
        for name in ("seq", "inner", "in_slow"):
            assert seen[name].status is Status.CANCELLED, name
            assert seen[name].cause is CancelCause.DEADLINE, name
        assert seen["after"].status is Status.CANCELLED and not seen["after"].started
        assert seen["in_fast"].status is Status.SUCCEEDED
        assert [o.name for o in recorder.outcomes if o.status is Status.TIMED_OUT] == ["outer"]

    async def test_tighter_inner_deadline_reported_by_inner(self) -> None:
        """With inner 0.05 s inside outer 5 s, the inner step reports its own timeout."""
        recorder = Recorder()
        ex = FlowExecutor(handlers=HANDLERS, hooks=[recorder])
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(nested(outer=5, inner=0.05))
        err = info.value
        assert err.step_name == "inner"
        assert err.timeout == 0.05
        assert err.partial == {"in_fast": "fast"}
        assert err.pending == ("in_slow",)
        seen = recorder.by_name()
        assert seen["inner"].status is Status.TIMED_OUT
        assert seen["seq"].status is Status.FAILED
        assert seen["outer"].status is Status.FAILED
        assert err.result is not None and err.result["sibling"] == "fast"
        assert seen["after"].cause is CancelCause.SIBLING_FAILURE
        assert [o.name for o in recorder.outcomes if o.status is Status.TIMED_OUT] == ["inner"]

    async def test_flow_deadline_raises_flow_timeout(self) -> None:
        """Flow(timeout=...) expiring raises FlowTimeoutError naming the flow, with partial."""
        flow = Flow(
            "checkout",
            [Request("a", "fast"), Request("b", "slow"), Request("c", "fast")],
            timeout=0.2,
        )
        with pytest.raises(FlowTimeoutError) as info:
            await FlowExecutor(handlers=HANDLERS).run(flow)
        err = info.value
        assert err.flow_name == "checkout"
        assert err.partial == {"a": "fast"}
        assert err.pending == ("b", "c")
        assert "flow 'checkout'" in str(err)
        assert err.result is not None and err.result.outcomes["b"].cause is CancelCause.DEADLINE

    async def test_step_timeout_larger_than_flow_deadline_is_clamped(self) -> None:
        """A step's 30 s default never outlives the flow's 0.1 s deadline."""
        flow = Flow("f", Request("b", "slow"), timeout=0.1)
        start = anyio.current_time()
        with pytest.raises(FlowTimeoutError):
            await FlowExecutor(handlers=HANDLERS).run(flow)
        assert anyio.current_time() - start < 0.5

    async def test_delay_step_cut_by_deadline(self) -> None:
        """A Delay longer than its parallel's deadline is cancelled with cause deadline."""
        flow = Flow("f", Parallel("p", [Delay("wait", 5)], timeout=0.1, on_timeout="partial"))
        result = await FlowExecutor().run(flow)
        assert result["p"] == {}
        assert result.outcomes["wait"].cause is CancelCause.DEADLINE


class TestOutsideCancellation:
    async def test_outside_cancel_is_not_a_timeout(self) -> None:
        """A caller's cancel scope stops the run: cancellation propagates, cause is outside."""
        recorder = Recorder()
        ex = FlowExecutor(handlers=HANDLERS, hooks=[recorder])
        flow = Flow(
            "f",
            Parallel("group", [Request("a", "fast"), Request("b", "slow")], timeout=5),
        )
        with anyio.move_on_after(0.1) as scope:
            await ex.run(flow)
        assert scope.cancelled_caught
        seen = recorder.by_name()
        assert seen["a"].status is Status.SUCCEEDED
        assert seen["b"].status is Status.CANCELLED and seen["b"].cause is CancelCause.OUTSIDE
        assert seen["group"].status is Status.CANCELLED
        assert seen["group"].cause is CancelCause.OUTSIDE
        assert not any(o.status is Status.TIMED_OUT for o in recorder.outcomes)

    async def test_explicit_cancel_from_a_task_group(self) -> None:
        """Cancelling the caller's task group mid-fan-out reports cause outside, not deadline."""
        recorder = Recorder()
        ex = FlowExecutor(handlers=HANDLERS, hooks=[recorder])
        flow = Flow("f", Parallel("group", [Request("b", "slow")], timeout=1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(ex.run, flow)
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        assert recorder.by_name()["b"].cause is CancelCause.OUTSIDE

    async def test_caller_deadline_clamps_but_is_not_ours(self) -> None:
        """A caller's fail_after bounds the run; the cut is cancellation, not StepTimeoutError."""
        recorder = Recorder()
        ex = FlowExecutor(handlers=HANDLERS, hooks=[recorder])
        flow = Flow("f", Request("b", "slow", timeout=5))
        with pytest.raises(TimeoutError) as info:
            with anyio.fail_after(0.1):
                await ex.run(flow)
        assert not isinstance(info.value, StepTimeoutError)
        assert recorder.by_name()["b"].cause is CancelCause.OUTSIDE
