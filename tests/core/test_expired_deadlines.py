"""Expired deadlines are reported by their owner, whatever the children do (never a silent
success): deadlines already past at a step boundary, children that never yield, values that
arrive after their deadline, and handlers that swallow cancellation."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from stepwatch import (
    CancelCause,
    DeadlineExceededError,
    Flow,
    FlowTimeoutError,
    Loop,
    Parallel,
    Request,
    Retry,
    Sequence,
    Status,
    StepTimeoutError,
    Transform,
)
from stepwatch.testing import OutcomeRecorder, blocking, hold_loop, sleeping

from .helpers import cpu_after_io, quiet

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

# Virtual time is exact on trio's MockClock; on asyncio real time passes, so the bounds
# below allow generous slack for a slow, shared machine.
SLACK = 0.25


def assert_one_outcome_per_child(err: StepTimeoutError, names: list[str]) -> None:
    """Every child is in ``outcomes`` once, and in exactly one of ``partial`` / ``pending``."""
    assert list(err.outcomes) == names
    assert set(err.partial) | set(err.pending) == set(names)
    assert not set(err.partial) & set(err.pending)
    for name in err.pending:
        outcome = err.outcomes[name]
        assert outcome.status is Status.CANCELLED, outcome
        assert outcome.cause is CancelCause.DEADLINE, outcome


class TestDeadlineAlreadyPassedAtAStepBoundary:
    async def test_parallel_after_a_hog_in_an_expired_sequence(self) -> None:
        """A parallel step reached after its sequence's deadline never starts; the sequence
        owns the timeout and the hog that ran past it is named."""
        recorder = OutcomeRecorder()
        entered: list[str] = []

        async def child(params: Any) -> Any:
            entered.append(params)
            return params

        children = [Request(f"c{i}", "child", f"c{i}") for i in range(7)]
        flow = Flow(
            "f",
            Sequence("seq", [Request("hog", "hog"), Parallel("p", children)], timeout=0.1),
        )
        ex = quiet(handlers={"hog": blocking(0.2, "hogged"), "child": child}, hooks=[recorder])
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(flow)
        err = info.value
        assert err.step_name == "seq"
        assert entered == []
        assert err.partial == {}
        assert err.pending == ("hog", "p")
        hog = err.outcomes["hog"]
        assert hog.status is Status.CANCELLED and hog.cause is CancelCause.DEADLINE
        assert hog.overrun is not None and 0.09 <= hog.overrun < 0.1 + SLACK
        assert hog.value == "hogged"  # computed late: kept on the outcome, not a result
        never = err.outcomes["p"]
        assert never.status is Status.CANCELLED and never.attempts == 0
        assert never.cause is CancelCause.DEADLINE
        assert "hog" in str(err) and "overran" in str(err)
        assert recorder.with_status(Status.SUCCEEDED) == []

    async def test_children_that_work_after_io_push_the_start_loop_past_the_deadline(
        self,
    ) -> None:
        """Children doing CPU work after I/O make the start loop find the deadline passed:
        the step raises, and every one of the 100 children has exactly one outcome."""
        names = [f"c{i}" for i in range(100)]
        flow = Flow("f", Parallel("p", [Request(n, "work", n) for n in names], timeout=0.1))
        ex = quiet(handlers={"work": cpu_after_io})
        start = anyio.current_time()
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(flow)
        took = anyio.current_time() - start
        err = info.value
        assert err.step_name == "p"
        assert took < 0.1 + 0.01 + SLACK
        assert_one_outcome_per_child(err, names)
        assert len(err.partial) <= 10  # 10 ms of work each fit at most 10 times in 100 ms
        assert err.result is not None and set(err.result.outcomes) >= set(names)

    async def test_max_concurrency_workers_stop_at_the_deadline(self) -> None:
        """Workers of a max_concurrency group find the deadline passed between two children:
        the group raises and the children never started are cancelled with attempts 0."""
        names = [f"c{i}" for i in range(10)]
        flow = Flow(
            "f",
            Parallel("p", [Request(n, "cpu", n) for n in names], timeout=0.1, max_concurrency=2),
        )
        ex = quiet(handlers={"cpu": blocking(0.03)})
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(flow)
        err = info.value
        assert_one_outcome_per_child(err, names)
        unstarted = [n for n in names if err.outcomes[n].attempts == 0]
        assert unstarted, err.outcomes
        assert all(not err.outcomes[n].started for n in unstarted)
        assert err.partial  # the first children finished in time and are kept

    async def test_enclosing_group_that_owns_the_expired_deadline_reports_it(self) -> None:
        """A sequence around a parallel whose only child holds the loop past the sequence's
        deadline raises the sequence's timeout on both backends."""
        flow = Flow(
            "f",
            Sequence("outer", [Parallel("p", [Request("hog", "hog")])], timeout=0.1),
        )
        with pytest.raises(StepTimeoutError) as info:
            await quiet(handlers={"hog": blocking(0.3)}).run(flow)
        assert info.value.step_name == "outer"
        assert info.value.outcomes["p"].status is Status.CANCELLED

    async def test_flow_deadline_already_passed_is_the_flows_timeout(self) -> None:
        """A hog that holds the loop past the whole-flow deadline gives FlowTimeoutError and
        the steps after it never start."""
        entered: list[str] = []

        async def later(params: Any) -> None:
            entered.append("later")

        flow = Flow("f", [Request("hog", "hog"), Request("later", "later")], timeout=0.05)
        with pytest.raises(FlowTimeoutError) as info:
            await quiet(handlers={"hog": blocking(0.1), "later": later}).run(flow)
        assert entered == []
        assert info.value.outcomes["later"].attempts == 0


def assert_loop_or_flow_timed_out(error: DeadlineExceededError, backend: Any) -> None:
    """The loop's own deadline is the one reported; in real time a loaded machine may
    preempt the process across both deadlines, and the outer (flow) one then wins."""
    if backend == "asyncio" and isinstance(error, FlowTimeoutError):
        return
    assert isinstance(error, StepTimeoutError) and error.step_name == "loop", error


class TestStepsThatNeverYield:
    async def test_loop_of_inline_transforms_stops_at_its_deadline(
        self, anyio_backend: Any
    ) -> None:
        """100 000 inline transforms under a 0.05 s loop deadline stop at the loop's deadline,
        not after all iterations."""
        done = 0

        def step(ctx: Any) -> None:
            nonlocal done
            done += 1
            hold_loop(2e-6)  # 2 µs of work each: 0.2 s in all, four times the budget

        flow = Flow(
            "f",
            Loop("loop", Transform("t", step, inline=True), times=100_000, timeout=0.05),
            timeout=0.1,
        )
        start = anyio.current_time()
        with pytest.raises(DeadlineExceededError) as info:
            await quiet().run(flow)
        took = anyio.current_time() - start
        assert_loop_or_flow_timed_out(info.value, anyio_backend)
        assert done < 100_000
        assert took < 0.05 + SLACK

    async def test_loop_of_cache_hits_stops_at_its_deadline(self, anyio_backend: Any) -> None:
        """Async handlers that return without awaiting (cache hits) still stop at the deadline."""
        calls = 0

        async def cached(params: Any) -> int:
            nonlocal calls
            calls += 1
            hold_loop(2e-6)
            return 1

        flow = Flow(
            "f",
            Loop("loop", Request("hit", "cached"), times=100_000, timeout=0.05),
            timeout=0.1,
        )
        with pytest.raises(DeadlineExceededError) as info:
            await quiet(handlers={"cached": cached}).run(flow)
        assert_loop_or_flow_timed_out(info.value, anyio_backend)
        assert calls < 100_000

    async def test_a_loop_condition_that_holds_past_the_deadline_starts_no_body(
        self,
    ) -> None:
        """A loop whose condition holds the loop past the deadline times out without
        naming its body as pending: the body never started and has no outcome."""
        entered: list[Any] = []

        async def body(params: Any) -> Any:
            entered.append(params)
            return params

        def slow_condition(ctx: Any) -> bool:
            hold_loop(0.3)
            return True

        recorder = OutcomeRecorder()
        flow = Flow("f", Loop("L", Request("b", "body", 1), condition=slow_condition, timeout=0.1))
        with pytest.raises(StepTimeoutError) as info:
            await quiet(handlers={"body": body}, hooks=[recorder]).run(flow)
        error = info.value
        assert error.step_name == "L"
        assert entered == []
        assert error.pending == ()
        assert "still pending" not in str(error)
        assert "b" not in error.result.outcomes


class TestValuesAfterTheDeadline:
    async def test_a_handler_that_blocks_past_its_own_deadline_times_out(self) -> None:
        """An async handler holding the loop 1 s under a 0.2 s timeout is a timeout with the
        0.8 s overrun recorded, not a success."""
        recorder = OutcomeRecorder()
        flow = Flow("f", Request("b", "block", timeout=0.2))
        ex = quiet(handlers={"block": blocking(1.0, "late")}, hooks=[recorder])
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(flow)
        err = info.value
        assert err.step_name == "b"
        assert err.overrun is not None and 0.79 <= err.overrun < 0.8 + SLACK
        assert "overran" in str(err)
        outcome = recorder["b"]
        assert outcome.status is Status.TIMED_OUT
        assert outcome.overrun == err.overrun
        assert outcome.value == "late"
        assert err.result is not None and "b" not in err.result

    async def test_the_blocker_is_named_not_the_innocent_sibling(self) -> None:
        """In a group, the child that held the loop past the deadline carries the overrun;
        the sibling that was waiting is cancelled without one."""
        flow = Flow(
            "f",
            Parallel("g", [Request("blocker", "block"), Request("innocent", "slow")], timeout=0.2),
        )
        ex = quiet(handlers={"block": blocking(1.0), "slow": sleeping(10)})
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(flow)
        err = info.value
        assert err.step_name == "g"
        blocker, innocent = err.outcomes["blocker"], err.outcomes["innocent"]
        assert blocker.overrun is not None and blocker.overrun >= 0.79
        assert innocent.overrun is None
        assert blocker.status is innocent.status is Status.CANCELLED
        assert "blocker" in str(err).split("overran", 1)[1]

    async def test_a_retried_step_that_overran_is_named_once(self) -> None:
        """A step that overran on every attempt is named once in its owner's timeout
        message, with the overrun of its last attempt."""
        retry = Retry(attempts=3, initial=0.01, jitter=False)
        hog = Request("hog", "block", timeout=0.1, retry=retry)  # the third is cut off by s
        flow = Flow("f", Sequence("s", [hog], timeout=0.45))
        with pytest.raises(StepTimeoutError) as info:
            await quiet(handlers={"block": blocking(0.15)}).run(flow)
        err = info.value
        assert err.step_name == "s"
        outcome = err.outcomes["hog"]
        assert outcome.attempts == 3 and outcome.overrun is not None
        named = str(err).split("overran the deadline", 1)[1]
        assert named.count("hog") == 1, named
        assert f"hog (+{outcome.overrun:.3f} s)" in named

    async def test_late_value_with_a_fallback_uses_the_fallback(self) -> None:
        """A value that arrives after the deadline is replaced by the step's fallback."""
        flow = Flow("f", Request("b", "block", timeout=0.2, fallback="cached"))
        result = await quiet(handlers={"block": blocking(0.5, "late")}).run(flow)
        assert result["b"] == "cached"
        assert result.outcomes["b"].status is Status.FALLBACK
        assert result.outcomes["b"].overrun is not None

    async def test_value_just_in_time_is_a_success(self) -> None:
        """A handler that holds the loop for less than its budget succeeds."""
        flow = Flow("f", Request("b", "block", timeout=0.2))
        result = await quiet(handlers={"block": blocking(0.1, "ok")}).run(flow)
        assert result["b"] == "ok"
        assert result.outcomes["b"].overrun is None


class TestHandlersThatSwallowCancellation:
    @staticmethod
    async def stubborn(params: Any) -> str:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            return "ignored the cancel"
        return "slept"

    async def test_owner_that_swallows_its_timeout_still_times_out(self) -> None:
        """A handler that catches its own timeout's cancellation and returns is a timeout on
        both backends."""
        recorder = OutcomeRecorder()
        flow = Flow("f", Request("s", "stubborn", timeout=0.1))
        ex = quiet(handlers={"stubborn": self.stubborn}, hooks=[recorder])
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(flow)
        assert info.value.step_name == "s"
        assert recorder["s"].status is Status.TIMED_OUT
        assert recorder["s"].overrun is not None and recorder["s"].overrun < SLACK

    async def test_child_that_swallows_the_groups_cancel_is_cut_off(self) -> None:
        """A child that catches the group's cancellation and returns is cancelled (cause
        deadline) and the group times out, on both backends."""
        flow = Flow(
            "f",
            Parallel("g", [Request("s", "stubborn"), Request("t", "stubborn")], timeout=0.1),
        )
        with pytest.raises(StepTimeoutError) as info:
            await quiet(handlers={"stubborn": self.stubborn}).run(flow)
        err = info.value
        assert err.step_name == "g"
        for name in ("s", "t"):
            assert err.outcomes[name].status is Status.CANCELLED
            assert err.outcomes[name].cause is CancelCause.DEADLINE
        assert err.partial == {}


class TestOverrunBound:
    @pytest.mark.parametrize("hold", [0.0, 0.01, 0.05])
    async def test_cooperative_children_stop_within_the_bound(self, hold: float) -> None:
        """Children that hold the loop for ``hold`` between awaits stop no later than one
        hold per child after the group's deadline (each may already be scheduled)."""

        async def chunks(params: Any) -> None:
            for _ in range(1000):
                hold_loop(hold)
                await anyio.sleep(0.005)

        flow = Flow("f", Parallel("g", [Request(f"c{i}", "chunks") for i in range(5)], timeout=0.1))
        start = anyio.current_time()
        with pytest.raises(StepTimeoutError):
            await quiet(handlers={"chunks": chunks}).run(flow)
        assert anyio.current_time() - start <= 0.1 + 5 * hold + SLACK
