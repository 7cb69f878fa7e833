"""The parallel step: one group deadline, partial results, fail-fast, quorum, concurrency."""

from __future__ import annotations

import math
import threading
import time

import anyio
import pytest

from stepwatch import (
    CancelCause,
    ErrorCode,
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Status,
    StepFailedError,
    StepTimeoutError,
)

from .helpers import Recorder, failer, sleeper

pytestmark = pytest.mark.anyio
virtual = pytest.mark.virtual_time

HANDLERS = {
    "fast": sleeper(0.01, "fast"),
    "medium": sleeper(0.05, "medium"),
    "slow": sleeper(10, "slow"),
    "boom": failer(ValueError("backend exploded"), after=0.02),
    "boom_now": failer(ValueError("backend exploded")),
}


def executor(**kwargs: object) -> FlowExecutor:
    return FlowExecutor(handlers=HANDLERS, **kwargs)  # type: ignore[arg-type]


@virtual
class TestGroupDeadline:
    async def test_fast_child_kept_slow_child_pending(self) -> None:
        """A 0.1 s group over 0.01 s and 10 s children raises at ~0.1 s with partial/pending."""
        flow = Flow(
            "f", Parallel("group", [Request("a", "fast"), Request("b", "slow")], timeout=0.1)
        )
        start = anyio.current_time()
        with pytest.raises(StepTimeoutError) as info:
            await executor().run(flow)
        took = anyio.current_time() - start
        err = info.value
        assert 0.1 <= took < 0.5
        assert err.partial == {"a": "fast"}
        assert err.pending == ("b",)
        assert err.step_name == "group"
        assert err.step_type == "parallel"
        assert err.code is ErrorCode.TIMEOUT
        assert err.retryable is True
        assert err.timeout == 0.1
        assert 0.1 <= err.elapsed < 0.5
        assert err.outcomes["a"].status is Status.SUCCEEDED
        assert err.outcomes["b"].status is Status.CANCELLED
        assert err.outcomes["b"].cause is CancelCause.DEADLINE
        assert "'group'" in str(err) and "still pending: b" in str(err) and "0.1 s" in str(err)

    async def test_error_carries_the_run_result(self) -> None:
        """The run's partial RunResult is attached to the error: nothing is lost."""
        flow = Flow(
            "f",
            [
                Request("first", "fast"),
                Parallel("group", [Request("a", "fast"), Request("b", "slow")], timeout=0.1),
            ],
        )
        with pytest.raises(StepTimeoutError) as info:
            await executor().run(flow)
        result = info.value.result
        assert result is not None
        assert result["first"] == "fast" and result["a"] == "fast"
        assert result.outcomes["group"].status is Status.TIMED_OUT
        assert result.outcomes["b"].cause is CancelCause.DEADLINE

    async def test_partial_mode_returns_finished_results(self) -> None:
        """on_timeout='partial' returns the finished results and the flow goes on."""
        flow = Flow(
            "f",
            Parallel(
                "group",
                [Request("a", "fast"), Request("b", "slow")],
                timeout=0.1,
                on_timeout="partial",
            ),
        )
        result = await executor().run(flow)
        assert result["group"] == {"a": "fast"}
        outcome = result.outcomes["group"]
        assert outcome.status is Status.TIMED_OUT and outcome.recovered
        assert isinstance(outcome.error, StepTimeoutError)
        assert result.outcomes["b"].status is Status.CANCELLED

    async def test_partial_mode_uses_child_fallbacks(self) -> None:
        """In partial mode a cut-off child with a fallback yields its fallback value."""
        flow = Flow(
            "f",
            Parallel(
                "group",
                [Request("a", "fast"), Request("b", "slow", fallback="cached")],
                timeout=0.1,
                on_timeout="partial",
            ),
        )
        result = await executor().run(flow)
        assert result["group"] == {"a": "fast", "b": "cached"}
        assert result.outcomes["b"].status is Status.FALLBACK
        assert result["b"] == "cached"

    async def test_children_are_really_stopped(self) -> None:
        """No child keeps running after the group deadline: cleanup runs before run() returns."""
        stopped: list[str] = []

        async def slow_with_cleanup(params: object) -> None:
            try:
                await anyio.sleep(10)
            finally:
                stopped.append("b")

        ex = FlowExecutor(handlers={"fast": HANDLERS["fast"], "slow": slow_with_cleanup})
        flow = Flow(
            "f", Parallel("group", [Request("a", "fast"), Request("b", "slow")], timeout=0.1)
        )
        with pytest.raises(StepTimeoutError):
            await ex.run(flow)
        assert stopped == ["b"]

    async def test_child_never_gets_more_than_the_group_has_left(self) -> None:
        """A child's own 5 s timeout is clamped by the 0.1 s group; the group owns the error."""
        flow = Flow("f", Parallel("group", [Request("b", "slow", timeout=5)], timeout=0.1))
        with pytest.raises(StepTimeoutError) as info:
            await executor().run(flow)
        assert info.value.step_name == "group"
        assert info.value.outcomes["b"].cause is CancelCause.DEADLINE

    async def test_tighter_child_timeout_is_the_childs_own(self) -> None:
        """A child whose own deadline is tighter times out by itself; siblings are unaffected."""
        flow = Flow(
            "f",
            Parallel(
                "group",
                [Request("a", "medium"), Request("b", "slow", timeout=0.02, fallback=None)],
                timeout=1,
            ),
        )
        result = await executor().run(flow)
        assert result["group"] == {"a": "medium", "b": None}
        assert result.outcomes["b"].status is Status.FALLBACK


class TestBlockingSyncHandler:
    async def test_sync_sleep_does_not_hold_the_group(self) -> None:
        """A sync handler blocked in time.sleep(5) does not hold the group past its deadline."""
        release = threading.Event()

        def blocking(params: object) -> str:
            time.sleep(5) if not release.is_set() else None
            return "late"

        ex = FlowExecutor(handlers={"fast": HANDLERS["fast"], "blocking": blocking})
        flow = Flow(
            "f",
            Parallel("group", [Request("a", "fast"), Request("b", "blocking")], timeout=0.2),
        )
        start = time.monotonic()
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(flow)
        took = time.monotonic() - start
        assert took < 1.5, took
        assert info.value.partial == {"a": "fast"}
        assert info.value.pending == ("b",)
        assert ex.workers.abandoned == 1
        assert ex.workers.abandoned_total == 1


@virtual
class TestFailFast:
    async def test_failure_cancels_siblings_and_keeps_finished(self) -> None:
        """A failing child cancels running siblings; finished results and the error are kept."""
        flow = Flow(
            "f",
            Parallel("group", [Request("a", "fast"), Request("b", "boom"), Request("c", "slow")]),
        )
        start = anyio.current_time()
        with pytest.raises(StepFailedError) as info:
            await executor().run(flow)
        assert anyio.current_time() - start < 1
        err = info.value
        assert err.step_name == "b" and err.step_type == "request"
        assert err.code is ErrorCode.STEP_FAILED
        assert isinstance(err.__cause__, ValueError)
        assert "backend exploded" in str(err)
        result = err.result
        assert result is not None
        assert result["a"] == "fast"
        assert result.outcomes["group"].status is Status.FAILED
        assert result.outcomes["b"].status is Status.FAILED
        assert result.outcomes["c"].status is Status.CANCELLED
        assert result.outcomes["c"].cause is CancelCause.SIBLING_FAILURE

    async def test_every_child_error_is_preserved(self) -> None:
        """An error raised by a sibling while it is being cancelled is kept beside the first."""

        async def fails_in_cleanup(params: object) -> None:
            try:
                await anyio.sleep(10)
            finally:
                raise RuntimeError("cleanup failed")

        ex = FlowExecutor(handlers={**HANDLERS, "bad_cleanup": fails_in_cleanup})
        flow = Flow(
            "f",
            Parallel(
                "group",
                [Request("x", "boom"), Request("y", "bad_cleanup"), Request("z", "slow")],
            ),
        )
        with pytest.raises(StepFailedError) as info:
            await ex.run(flow)
        err = info.value
        assert err.step_name == "group"
        assert "2 of 3 children failed" in str(err)
        assert [e.step_name for e in err.errors] == ["x", "y"]  # type: ignore[attr-defined]
        assert [type(e.__cause__) for e in err.errors] == [ValueError, RuntimeError]
        group = err.__cause__
        assert isinstance(group, ExceptionGroup)
        assert list(group.exceptions) == list(err.errors)
        assert err.outcomes["z"].cause is CancelCause.SIBLING_FAILURE

    async def test_all_failures_kept_without_fail_fast(self) -> None:
        """With fail_fast=False every failing child's error is in the ExceptionGroup."""
        flow = Flow(
            "f",
            Parallel(
                "group",
                [Request("x", "boom_now"), Request("y", "boom"), Request("a", "fast")],
                fail_fast=False,
            ),
        )
        with pytest.raises(StepFailedError) as info:
            await executor().run(flow)
        group = info.value.__cause__
        assert isinstance(group, ExceptionGroup)
        assert len(group.exceptions) == 2
        assert info.value.partial == {"a": "fast"}

    async def test_without_fail_fast_all_children_finish(self) -> None:
        """fail_fast=False lets the other children finish, then raises with every result."""
        flow = Flow(
            "f",
            Parallel(
                "group",
                [Request("a", "medium"), Request("b", "boom_now")],
                fail_fast=False,
            ),
        )
        with pytest.raises(StepFailedError) as info:
            await executor().run(flow)
        result = info.value.result
        assert result is not None
        assert result["a"] == "medium"
        assert result.outcomes["b"].status is Status.FAILED
        assert result.outcomes["a"].elapsed >= 0.05


@virtual
class TestQuorum:
    async def test_min_successes_returns_without_waiting(self) -> None:
        """min_successes=2 returns as soon as two children succeeded and cancels the slow one."""
        flow = Flow(
            "f",
            Parallel(
                "hedge",
                [Request("a", "fast"), Request("b", "medium"), Request("c", "slow")],
                min_successes=2,
            ),
        )
        start = anyio.current_time()
        result = await executor().run(flow)
        assert anyio.current_time() - start < 1
        assert result["hedge"] == {"a": "fast", "b": "medium"}
        assert result.outcomes["c"].status is Status.CANCELLED
        assert result.outcomes["c"].cause is CancelCause.QUORUM_MET

    async def test_quorum_tolerates_failures_while_reachable(self) -> None:
        """A failure does not abort a quorum group while the quorum can still be reached."""
        flow = Flow(
            "f",
            Parallel(
                "hedge",
                [Request("x", "boom_now"), Request("a", "fast"), Request("b", "medium")],
                min_successes=2,
            ),
        )
        result = await executor().run(flow)
        assert result["hedge"] == {"a": "fast", "b": "medium"}
        assert result.outcomes["x"].status is Status.FAILED

    async def test_unreachable_quorum_fails(self) -> None:
        """When too many children failed for the quorum, the group fails and says why."""
        flow = Flow(
            "f",
            Parallel(
                "hedge",
                [Request("x", "boom_now"), Request("y", "boom_now"), Request("c", "slow")],
                min_successes=2,
            ),
        )
        with pytest.raises(StepFailedError, match="min_successes=2 can no longer be reached"):
            await executor().run(flow)


@virtual
class TestMaxConcurrency:
    async def test_queued_children_reported_at_deadline(self) -> None:
        """With max_concurrency=1 the children never started are reported, not dropped."""
        children = [
            Request("a", "fast"),
            Request("b", "slow"),
            Request("c", "fast"),
            Request("d", "fast"),
        ]
        recorder = Recorder()
        ex = FlowExecutor(handlers=HANDLERS, hooks=[recorder])
        flow = Flow("f", Parallel("group", children, timeout=0.1, max_concurrency=1))
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(flow)
        err = info.value
        assert err.partial == {"a": "fast"}
        assert err.pending == ("b", "c", "d")
        for name in ("c", "d"):
            outcome = err.outcomes[name]
            assert outcome.status is Status.CANCELLED
            assert outcome.cause is CancelCause.DEADLINE
            assert outcome.attempts == 0 and not outcome.started
        assert err.outcomes["b"].started
        assert sorted(o.name for o in recorder.outcomes if o.step_type != "flow") == [
            "a",
            "b",
            "c",
            "d",
            "group",
        ]

    async def test_at_most_n_children_run_at_once(self) -> None:
        """max_concurrency bounds how many children run at the same time."""
        running = 0
        peak = 0

        async def tracked(params: object) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0.01)
            running -= 1
            return 1

        ex = FlowExecutor(handlers={"t": tracked})
        flow = Flow(
            "f", Parallel("g", [Request(f"c{i}", "t") for i in range(10)], max_concurrency=3)
        )
        result = await ex.run(flow)
        assert peak == 3
        assert list(result["g"]) == [f"c{i}" for i in range(10)]


@virtual
async def test_no_children_started_after_the_deadline() -> None:
    """A group whose deadline already passed starts no child; all are reported cancelled."""
    started: list[str] = []

    async def record(params: str) -> None:
        started.append(params)

    ex = FlowExecutor(handlers={"r": record, "slow": HANDLERS["slow"]})

    flow = Flow(
        "f",
        Parallel(
            "outer",
            [
                Request("blocker", "slow"),
                Parallel("late", [Request(f"c{i}", "r", params=f"c{i}") for i in range(100)]),
            ],
            timeout=0.05,
            max_concurrency=1,
        ),
    )
    with pytest.raises(StepTimeoutError) as info:
        await ex.run(flow)
    assert started == []
    assert info.value.pending == ("blocker", "late")
    assert math.isclose(info.value.timeout, 0.05)
