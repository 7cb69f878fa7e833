"""Degrade instead of fail: Parallel(on_failure="partial") and fallback_on=("failure",)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from stepwatch import (
    CancelCause,
    Delay,
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Retry,
    Sequence,
    Status,
    StepFailedError,
    StepTimeoutError,
    Transform,
    ValidationError,
)

from .helpers import Flaky, Recorder, failer, quiet, sleeper

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


HANDLERS = {
    "fast": sleeper(0.01, "fast"),
    "medium": sleeper(0.05, "medium"),
    "hang": sleeper(100, "hang"),
    "boom": failer(ValueError("backend exploded"), after=0.02),
    "reset": failer(ConnectionError("reset by peer"), after=0.01),
}


def executor(**kwargs: Any) -> FlowExecutor:
    """A quiet executor with this module's handlers (unless others are given)."""
    kwargs.setdefault("handlers", HANDLERS)
    return quiet(**kwargs)


def five_backends(**options: Any) -> Parallel:
    """The issue's trial: five backends, one raising, one hitting its own timeout."""
    return Parallel(
        "enrich",
        [
            Request("inventory", "fast"),
            Request("pricing", "medium"),
            Request("reviews", "fast"),
            Request("flaky", "boom"),
            Request("hanging", "hang", timeout=0.1),
        ],
        timeout=0.3,
        **options,
    )


class TestDegradingParallel:
    async def test_returns_the_backends_that_answered(self) -> None:
        """One child raising and one hitting its own timeout no longer fail the fan-out:
        the three answers come back and the flow goes on."""
        flow = Flow(
            "page",
            [
                five_backends(on_timeout="partial", on_failure="partial"),
                Transform("render", lambda ctx: sorted(ctx.results["enrich"]), inline=True),
            ],
        )
        result = await executor().run(flow)
        assert result["enrich"] == {"inventory": "fast", "pricing": "medium", "reviews": "fast"}
        assert result["render"] == ["inventory", "pricing", "reviews"]
        outcomes = result.outcomes
        assert outcomes["flaky"].status is Status.FAILED
        assert isinstance(outcomes["flaky"].error, StepFailedError)
        assert outcomes["hanging"].status is Status.TIMED_OUT
        assert isinstance(outcomes["hanging"].error, StepTimeoutError)
        group = outcomes["enrich"]
        assert group.status is Status.SUCCEEDED and group.recovered and group.ok
        assert isinstance(group.error, StepFailedError)
        assert "2 of 5 children failed: flaky (failed), hanging (timed_out)" in str(group.error)
        assert set(group.error.outcomes) == {
            "inventory",
            "pricing",
            "reviews",
            "flaky",
            "hanging",
        }

    async def test_the_same_flow_without_degrading_fails(self) -> None:
        """The default is unchanged: the first failure fails the group (fail-fast)."""
        with pytest.raises(StepFailedError) as info:
            await executor().run(Flow("page", five_backends(on_timeout="partial")))
        assert info.value.step_name == "flaky"

    async def test_siblings_are_not_cancelled(self) -> None:
        """Degrading implies fail_fast=False: a failure cancels nothing, every child ends."""
        group = Parallel(
            "g",
            [Request("flaky", "boom"), Request("slow", "medium")],
            on_failure="partial",
        )
        assert group.fail_fast is False
        recorder = Recorder()
        result = await executor(hooks=[recorder]).run(Flow("f", group))
        assert result["g"] == {"slow": "medium"}
        assert not [o for o in recorder.outcomes if o.status is Status.CANCELLED]

    async def test_every_child_failing_returns_nothing(self) -> None:
        """When every child fails the step returns {} (allSettled), and says so."""
        group = Parallel(
            "g",
            [Request("a", "boom"), Request("b", "reset"), Request("c", "hang", timeout=0.05)],
            on_failure="partial",
        )
        result = await executor().run(Flow("f", [group, Delay("after", 0)]))
        assert result["g"] == {}
        assert result.outcomes["after"].status is Status.SUCCEEDED
        outcome = result.outcomes["g"]
        assert outcome.status is Status.SUCCEEDED and outcome.recovered
        assert "3 of 3 children failed" in str(outcome.error)
        assert outcome.error is not None
        assert isinstance(outcome.error.__cause__, ExceptionGroup)
        assert len(outcome.error.__cause__.exceptions) == 3

    async def test_no_failure_is_a_plain_success(self) -> None:
        """A degrading group whose children all succeed is not marked recovered."""
        group = Parallel("g", [Request("a", "fast")], on_failure="partial")
        result = await executor().run(Flow("f", group))
        outcome = result.outcomes["g"]
        assert outcome.status is Status.SUCCEEDED and not outcome.recovered
        assert outcome.error is None

    async def test_group_deadline_with_partial_returns_what_finished(self) -> None:
        """With on_timeout="partial" too, the group's deadline returns what finished, the
        earlier failures forgiven; the cut-off child is cancelled by the deadline."""
        group = Parallel(
            "g",
            [Request("a", "fast"), Request("flaky", "boom"), Request("slow", "hang")],
            timeout=0.2,
            on_timeout="partial",
            on_failure="partial",
        )
        result = await executor().run(Flow("f", group))
        assert result["g"] == {"a": "fast"}
        outcomes = result.outcomes
        assert outcomes["g"].status is Status.TIMED_OUT and outcomes["g"].recovered
        assert outcomes["flaky"].status is Status.FAILED
        assert outcomes["slow"].status is Status.CANCELLED
        assert outcomes["slow"].cause is CancelCause.DEADLINE

    async def test_partial_timeout_alone_still_raises_earlier_failures(self) -> None:
        """on_timeout="partial" without degrading keeps forgiving only the timeout."""
        group = Parallel(
            "g",
            [Request("a", "fast"), Request("flaky", "boom"), Request("slow", "hang")],
            timeout=0.2,
            on_timeout="partial",
            fail_fast=False,
        )
        with pytest.raises(StepFailedError):
            await executor().run(Flow("f", group))

    async def test_group_deadline_still_raises_by_default(self) -> None:
        """Degrading forgives failures, not the group's deadline (on_timeout="raise")."""
        group = Parallel(
            "g",
            [Request("a", "fast"), Request("flaky", "boom"), Request("slow", "hang")],
            timeout=0.2,
            on_failure="partial",
        )
        with pytest.raises(StepTimeoutError) as info:
            await executor().run(Flow("f", group))
        assert info.value.partial == {"a": "fast"}
        assert info.value.pending == ("slow",)
        assert info.value.outcomes["flaky"].status is Status.FAILED

    async def test_quorum_met_despite_a_failure(self) -> None:
        """With min_successes the step returns once the quorum is met; the failure before
        it is recorded and the step is marked recovered."""
        group = Parallel(
            "g",
            [Request("x", "reset"), Request("a", "fast"), Request("b", "medium")],
            min_successes=2,
            on_failure="partial",
        )
        result = await executor().run(Flow("f", group))
        assert result["g"] == {"a": "fast", "b": "medium"}
        assert result.outcomes["x"].status is Status.FAILED
        assert result.outcomes["g"].recovered

    async def test_quorum_out_of_reach_still_fails(self) -> None:
        """min_successes is a floor: when it can no longer be met the step fails, even
        when it degrades, and the rest are cancelled."""
        group = Parallel(
            "g",
            [
                Request("x", "reset"),
                Request("y", "boom"),
                Request("a", "fast"),
                Request("s", "hang"),
            ],
            min_successes=3,
            on_failure="partial",
        )
        with pytest.raises(StepFailedError, match="min_successes=3 can no longer be reached"):
            await executor().run(Flow("f", group))

    async def test_with_max_concurrency_every_child_runs(self) -> None:
        """Queued children still start after earlier ones failed."""
        children = [Request(f"c{i}", "boom" if i % 2 else "fast") for i in range(6)]
        group = Parallel("g", children, max_concurrency=2, on_failure="partial")
        result = await executor().run(Flow("f", group))
        assert result["g"] == {"c0": "fast", "c2": "fast", "c4": "fast"}
        assert all(result.outcomes[f"c{i}"].attempts == 1 for i in range(6))

    async def test_outside_cancellation_still_propagates(self) -> None:
        """Degrading never swallows the caller's cancellation."""
        group = Parallel("g", [Request("a", "hang"), Request("b", "boom")], on_failure="partial")
        with anyio.move_on_after(0.1) as scope:
            await executor().run(Flow("f", group))
        assert scope.cancelled_caught

    async def test_nested_degrading_group_is_a_success_for_its_parent(self) -> None:
        """A degraded inner group counts as a success for a fail-fast outer group."""
        children = [Request("a", "fast"), Request("b", "boom")]
        inner = Parallel("inner", children, on_failure="partial")
        outer = Parallel("outer", [inner, Request("c", "medium")])
        result = await executor().run(Flow("f", outer))
        assert result["outer"] == {"inner": {"a": "fast"}, "c": "medium"}
        assert result.outcomes["outer"].status is Status.SUCCEEDED
        assert not result.outcomes["outer"].recovered

    async def test_children_with_failure_fallbacks(self) -> None:
        """A child with fallback_on="failure" contributes its fallback to the results."""
        group = Parallel(
            "g",
            [Request("a", "fast"), Request("b", "boom", fallback="default", fallback_on="failure")],
            on_failure="partial",
        )
        result = await executor().run(Flow("f", group))
        assert result["g"] == {"a": "fast", "b": "default"}
        assert not result.outcomes["g"].recovered  # nothing failed: b fell back


class TestDegradeDefinition:
    def test_fail_fast_defaults(self) -> None:
        """fail_fast left unset is True, or False when the step degrades."""
        assert Parallel("p", [Delay("d", 0)]).fail_fast is True
        assert Parallel("p", [Delay("d", 0)], on_failure="partial").fail_fast is False
        assert Parallel("p", [Delay("d", 0)], fail_fast=False).fail_fast is False

    def test_fail_fast_contradicting_degrade_is_rejected(self) -> None:
        """fail_fast=True with on_failure="partial" is a ValidationError naming the field."""
        with pytest.raises(ValidationError, match="fail_fast=True contradicts") as info:
            Parallel("p", [Delay("d", 0)], on_failure="partial", fail_fast=True)
        assert info.value.field == "p.fail_fast" and info.value.value is True

    @pytest.mark.parametrize("value", ["ignore", "PARTIAL", None, True, 1])
    def test_bad_on_failure(self, value: Any) -> None:
        """on_failure must be "raise" or "partial"; the error names the field and value."""
        with pytest.raises(ValidationError, match=r"Parallel\('p'\).on_failure must be") as info:
            Parallel("p", [Delay("d", 0)], on_failure=value)
        assert info.value.field == "p.on_failure" and info.value.value == value


class TestFallbackOnFailure:
    async def test_fallback_covers_a_failure_when_asked(self) -> None:
        """fallback_on=("timeout", "failure"): a raising handler yields the fallback; the
        outcome is fallback and keeps the error."""
        step = Request("r", "boom", fallback={"stock": None}, fallback_on=("timeout", "failure"))
        result = await executor().run(Flow("f", [step, Delay("after", 0)]))
        assert result["r"] == {"stock": None}
        outcome = result.outcomes["r"]
        assert outcome.status is Status.FALLBACK and outcome.recovered and outcome.ok
        assert isinstance(outcome.error, StepFailedError)
        assert isinstance(outcome.error.__cause__, ValueError)
        assert outcome.error.step_name == "r" and outcome.error.retryable is False
        assert "its fallback was used" in str(outcome.error)
        assert result.outcomes["after"].status is Status.SUCCEEDED

    async def test_the_same_timeout_fallback_still_works(self) -> None:
        """With both, a timeout still yields the fallback, keeping the timeout error."""
        step = Request("r", "hang", timeout=0.05, fallback="x", fallback_on=("failure", "timeout"))
        result = await executor().run(Flow("f", step))
        assert result["r"] == "x"
        assert isinstance(result.outcomes["r"].error, StepTimeoutError)

    async def test_applies_after_the_retries(self) -> None:
        """Retryable failures are retried first; the fallback comes after the last attempt."""
        backend = Flaky.times(10, ConnectionError("reset"), delay=0.01)
        step = Request(
            "r",
            "h",
            retry=Retry(attempts=3, initial=0.1, jitter=False),
            fallback="cached",
            fallback_on="failure",
        )
        start = anyio.current_time()
        result = await executor(handlers={"h": backend}).run(Flow("f", step))
        assert result["r"] == "cached"
        assert len(backend.calls) == 3
        assert result.outcomes["r"].attempts == 3
        took = anyio.current_time() - start
        assert 0.03 + 0.1 + 0.2 - 0.005 <= took < 0.6  # three attempts and two backoffs
        assert result.outcomes["r"].error.retryable is True  # type: ignore[union-attr]

    async def test_success_after_retries_needs_no_fallback(self) -> None:
        """A retry that succeeds is a success: the fallback is not used."""
        backend = Flaky.times(1, ConnectionError("reset"), delay=0.01)
        step = Request("r", "h", retry=2, fallback="cached", fallback_on="failure")
        result = await executor(handlers={"h": backend}).run(Flow("f", step))
        assert result["r"] == "ok" and result.outcomes["r"].status is Status.SUCCEEDED

    async def test_failure_only_leaves_timeouts_raising(self) -> None:
        """fallback_on="failure" alone does not cover the step's own timeout."""
        step = Request("r", "hang", timeout=0.05, fallback="x", fallback_on="failure")
        with pytest.raises(StepTimeoutError):
            await executor().run(Flow("f", step))

    async def test_default_still_covers_timeouts_only(self) -> None:
        """Without fallback_on, a failure raises as before."""
        step = Request("r", "boom", fallback="x")
        assert step.fallback_on == ("timeout",)
        with pytest.raises(StepFailedError):
            await executor().run(Flow("f", step))

    async def test_programming_errors_fall_back_too(self) -> None:
        """A failure fallback is a catch-all for the step's exceptions (they stay visible)."""
        step = Request("r", "bug", fallback=0, fallback_on="failure")
        bug = failer(TypeError("unsupported operand"))
        result = await executor(handlers={"bug": bug}).run(Flow("f", step))
        assert result["r"] == 0
        assert isinstance(result.outcomes["r"].error.__cause__, TypeError)  # type: ignore[union-attr]

    async def test_a_composite_falls_back_on_a_child_failure(self) -> None:
        """A sequence with a failure fallback yields it when a child fails; the child keeps
        its failed outcome."""
        seq = Sequence(
            "seq",
            [Request("a", "fast"), Request("b", "boom")],
            fallback={"a": "stale"},
            fallback_on="failure",
        )
        result = await executor().run(Flow("f", seq))
        assert result["seq"] == {"a": "stale"}
        assert result.outcomes["b"].status is Status.FAILED
        assert result.outcomes["seq"].status is Status.FALLBACK

    async def test_not_used_when_cut_off_by_an_enclosing_deadline(self) -> None:
        """A step cut off by its group's deadline is cancelled, not failed: no fallback."""
        group = Parallel(
            "g", [Request("r", "hang", fallback="x", fallback_on="failure")], timeout=0.05
        )
        with pytest.raises(StepTimeoutError) as info:
            await executor().run(Flow("f", group))
        assert info.value.outcomes["r"].status is Status.CANCELLED

    async def test_not_used_when_cut_off_by_a_partial_groups_deadline(self) -> None:
        """A group returning partial results at its deadline gives a cut-off child no
        failure-only fallback: the child stays cancelled and pending, with no value."""
        recorder = Recorder()
        group = Parallel(
            "g",
            [Request("a", "fast"), Request("r", "hang", fallback="x", fallback_on="failure")],
            timeout=0.05,
            on_timeout="partial",
        )
        result = await executor(hooks=[recorder]).run(Flow("f", group))
        assert result["g"] == {"a": "fast"}
        assert "r" not in result
        outcome = result.outcomes["r"]
        assert outcome.status is Status.CANCELLED and outcome.cause is CancelCause.DEADLINE
        assert outcome.value is None and not outcome.recovered
        assert [o.status for o in recorder.outcomes if o.name == "r"] == [Status.CANCELLED]
        group_error = result.outcomes["g"].error
        assert isinstance(group_error, StepTimeoutError) and group_error.pending == ("r",)

    async def test_hooks_see_the_fallback_with_its_error(self) -> None:
        """Hooks get the fallback outcome with the failure it replaced."""
        recorder = Recorder()
        step = Request("r", "boom", fallback="x", fallback_on="failure")
        await executor(hooks=[recorder]).run(Flow("f", step))
        (outcome,) = [o for o in recorder.outcomes if o.name == "r"]
        assert outcome.status is Status.FALLBACK
        assert isinstance(outcome.error, StepFailedError)


class TestFallbackOnDefinition:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("timeout", ("timeout",)),
            ("failure", ("failure",)),
            (("failure", "timeout"), ("timeout", "failure")),
            (["timeout", "failure", "failure"], ("timeout", "failure")),
            (frozenset({"failure"}), ("failure",)),
        ],
    )
    def test_normalised(self, value: Any, expected: tuple[str, ...]) -> None:
        """A string or any iterable of them, kept as a tuple in canonical order."""
        assert Request("r", "h", fallback=1, fallback_on=value).fallback_on == expected

    @pytest.mark.parametrize(
        "value",
        ["error", "", (), ["timeout", 1], b"failure", {"failure": True}, 3, ("timeouts",)],
    )
    def test_bad_values(self, value: Any) -> None:
        """Anything else is a ValidationError naming the field and the value."""
        with pytest.raises(ValidationError, match=r"Request\('r'\).fallback_on must be") as info:
            Request("r", "h", fallback=1, fallback_on=value)
        assert info.value.field == "r.fallback_on"

    def test_needs_a_fallback(self) -> None:
        """fallback_on without a fallback value is a mistake, caught at definition."""
        with pytest.raises(ValidationError, match="needs a fallback value") as info:
            Request("r", "h", fallback_on="failure")
        assert info.value.field == "r.fallback_on"

    def test_keyword_only(self) -> None:
        """fallback_on is keyword-only, on every step type."""
        seq = Sequence("s", [Delay("d", 0)], fallback=None, fallback_on="failure")
        assert seq.fallback_on == ("failure",)
        with pytest.raises(TypeError):
            Request("r", "h", None, None, "failure")  # type: ignore[misc]
