"""Runs are independent; the executor registry takes user step types and decorators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import pytest

from stepwatch import (
    CancelCause,
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Status,
    Step,
    StepContext,
    StepExecutor,
    StepTimeoutError,
    Transform,
    ValidationError,
)

from .helpers import Recorder, sleeper

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


class TestIndependentRuns:
    async def test_run_after_a_timed_out_run_is_fresh(self) -> None:
        """After a timed-out run, the next run on the same executor behaves like a fresh one."""
        delays = {"a": 0.01, "b": 10.0}

        async def backend(params: str) -> str:
            await anyio.sleep(delays[params])
            return params

        ex = FlowExecutor(handlers={"h": backend})
        flow = Flow(
            "f", Parallel("g", [Request("a", "h", "a"), Request("b", "h", "b")], timeout=0.1)
        )
        with pytest.raises(StepTimeoutError) as first:
            await ex.run(flow)
        delays["b"] = 0.02
        result = await ex.run(flow)
        assert result["g"] == {"a": "a", "b": "b"}
        assert {o.status for o in result.outcomes.values()} == {Status.SUCCEEDED}
        assert first.value.result is not None
        assert first.value.result.run_id != result.run_id
        assert first.value.result.outcomes["b"].status is Status.CANCELLED

    async def test_concurrent_runs_do_not_share_state(self) -> None:
        """Concurrent runs of one flow each get their own results and outcomes."""

        async def backend(params: int) -> int:
            await anyio.sleep(0.01 * params)
            return params

        ex = FlowExecutor(handlers={"h": backend})
        flow = Flow("f", Request("r", "h", lambda ctx: ctx.input))
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            results[i] = (await ex.run(flow, input=i))["r"]

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
        assert results == {i: i for i in range(20)}


class TestRunIds:
    async def test_a_given_run_id_names_the_run_and_an_empty_one_gets_a_fresh_id(
        self,
    ) -> None:
        """run(run_id=...) is the result's run_id; None or "" makes a fresh one per run."""
        ex = FlowExecutor(handlers={"h": sleeper(0.01, "x")})
        flow = Flow("f", Request("r", "h"))
        assert (await ex.run(flow, run_id="req-42")).run_id == "req-42"
        fresh = {(await ex.run(flow, run_id=given)).run_id for given in (None, "", None)}
        assert len(fresh) == 3
        assert "" not in fresh

    @pytest.mark.parametrize("bad", [42, b"id", "req-\ud800"], ids=["int", "bytes", "surrogate"])
    async def test_a_run_id_telemetry_cannot_export_is_rejected_before_anything_runs(
        self, bad: Any
    ) -> None:
        """A run_id that is not a string UTF-8 can encode is a ValidationError naming the
        argument and the value, and no handler is called."""
        called: list[Any] = []
        ex = FlowExecutor(handlers={"h": called.append})
        with pytest.raises(ValidationError) as caught:
            await ex.run(Flow("f", Transform("t", called.append, inline=True)), run_id=bad)
        assert caught.value.field == "FlowExecutor.run.run_id"
        assert caught.value.value == bad
        assert "run_id" in str(caught.value)
        assert called == []


@dataclass(frozen=True, slots=True, eq=False)
class Hedge(Step):
    """A user step type: run `steps` until one succeeds."""

    type: ClassVar[str] = "hedge"
    steps: tuple[Step, ...] = ()

    def children(self) -> tuple[Step, ...]:
        return self.steps


class HedgeExecutor:
    def can_execute(self, step: Step) -> bool:
        return isinstance(step, Hedge)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        assert isinstance(step, Hedge)
        ctx.track_children(step.steps)
        for index, child in enumerate(step.steps):
            outcome = await ctx.run_child(child, index=index)
            if outcome.ok:
                return outcome.value
        raise LookupError("every option failed")


class CountingDecorator:
    """An ExecutorDecorator that counts executions per step type."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, executor: StepExecutor) -> StepExecutor:
        outer = self

        class Wrapped:
            def can_execute(self, step: Step) -> bool:
                return executor.can_execute(step)

            async def execute(self, step: Step, ctx: StepContext) -> Any:
                outer.calls.append(step.type)
                return await executor.execute(step, ctx)

        return Wrapped()


class TestRegistry:
    async def test_user_step_type_runs_under_the_rules(self) -> None:
        """A registered user step type runs, its children get deadlines and outcomes."""
        ex = FlowExecutor(handlers={"slow": sleeper(10), "ok": sleeper(0.01, "ok")})
        ex.register(Hedge, HedgeExecutor())
        flow = Flow(
            "f",
            Hedge("h", (Request("a", "slow", timeout=0.05, retry=None), Request("b", "ok"))),
        )
        result = await ex.run(flow)
        assert result["h"] == "ok"
        assert result.outcomes["a"].status is Status.TIMED_OUT
        assert result.outcomes["a"].timeout == 0.05
        assert result.outcomes["h"].status is Status.SUCCEEDED
        flow_ok = Flow(
            "f2",
            Hedge("h", (Request("a", "slow", timeout=0.05, fallback=None), Request("b", "ok"))),
        )
        result = await ex.run(flow_ok)
        assert result["h"] is None
        assert result.outcomes["a"].status is Status.FALLBACK

    async def test_user_executor_gets_user_decorators(self) -> None:
        """Decorators wrap built-in and user executors alike."""
        counter = CountingDecorator()
        ex = FlowExecutor(handlers={"ok": sleeper(0, "ok")}, decorators=[counter])
        ex.register("hedge", HedgeExecutor())
        await ex.run(Flow("f", Hedge("h", (Request("b", "ok"),))))
        assert counter.calls == ["flow", "hedge", "request"]

    def test_double_registration_needs_replace(self) -> None:
        """Registering a type twice is an error unless replace=True."""
        ex = FlowExecutor()
        with pytest.raises(ValidationError, match="already registered; pass replace=True"):
            ex.register("parallel", HedgeExecutor())
        ex.register("parallel", HedgeExecutor(), replace=True)

    def test_register_checks_the_protocol(self) -> None:
        """An object without can_execute/execute is rejected."""
        with pytest.raises(ValidationError, match="must have can_execute"):
            FlowExecutor().register("x", object())  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("step_type", "field"),
        [
            (123, "step_type"),
            (int, "step_type"),
            ("", "step_type"),
            ("hedge", "executor"),  # given the executor's class, not an instance
        ],
        ids=["int", "not-a-step-class", "empty", "executor-class"],
    )
    def test_register_rejects_what_cannot_work(self, step_type: Any, field: str) -> None:
        """register() with a step type that is neither a name nor a Step subclass, an empty
        name, or an executor class instead of an instance is a ValidationError."""
        executor: Any = HedgeExecutor if field == "executor" else HedgeExecutor()
        with pytest.raises(ValidationError) as caught:
            FlowExecutor().register(step_type, executor)
        assert caught.value.field == f"FlowExecutor.register.{field}"

    def test_a_user_steps_children_must_be_steps(self) -> None:
        """A user step whose children() holds something that is not a step is a
        ValidationError naming it when the Flow is made."""
        bad: Any = (Request("a", "h"), "typo")
        with pytest.raises(ValidationError) as caught:
            Flow("f", Hedge("h", bad))
        assert caught.value.value == "typo"
        assert "children()" in str(caught.value)

    async def test_never_started_children_get_the_time_they_were_recorded(self) -> None:
        """Hooks get a never-started child's record with the clock reading at which it
        was recorded, not 0."""
        recorder = Recorder()
        ex = FlowExecutor(
            handlers={"slow": sleeper(10)}, hooks=[recorder], tracing=False, metrics=False
        )
        flow = Flow(
            "f",
            Parallel(
                "p",
                [Request("a", "slow"), Request("b", "slow")],
                max_concurrency=1,
                timeout=0.05,
            ),
        )
        start = anyio.current_time()
        with pytest.raises(StepTimeoutError):
            await ex.run(flow)
        (never,) = [r for r in recorder.records if r.outcome.attempts == 0]
        assert never.step.name == "b"
        assert start + 0.05 <= never.ended <= anyio.current_time()

    async def test_children_started_after_a_cancel_get_their_own_cause(self) -> None:
        """A user executor that cancels one group of children (quorum met) and then runs
        another child cut off by the step's own deadline: that child's cause is deadline,
        the cancelled one's quorum_met."""

        class FirstThenRest:
            def can_execute(self, step: Step) -> bool:
                return isinstance(step, Hedge)

            async def execute(self, step: Step, ctx: StepContext) -> Any:
                assert isinstance(step, Hedge)
                first, second, rest = step.steps
                ctx.track_children(step.steps)
                try:
                    async with anyio.create_task_group() as tg:

                        async def one(i: int, child: Step) -> None:
                            if (await ctx.run_child(child, index=i)).ok:
                                ctx.cancel_children(tg.cancel_scope, CancelCause.QUORUM_MET)

                        tg.start_soon(one, 0, first)
                        tg.start_soon(one, 1, second)
                    await ctx.run_child(rest, index=2)  # cut off by this step's deadline
                except anyio.get_cancelled_exc_class():
                    ctx.close_children()
                    raise
                return None

        ex = FlowExecutor(handlers={"fast": sleeper(0), "slow": sleeper(10)})
        ex.register(Hedge, FirstThenRest())
        children = (Request("a", "fast"), Request("b", "slow"), Request("c", "slow"))
        with pytest.raises(StepTimeoutError) as caught:
            await ex.run(Flow("f", Hedge("s", children, timeout=0.5)))
        outcomes = caught.value.result.outcomes
        assert outcomes["b"].cause is CancelCause.QUORUM_MET
        assert outcomes["c"].cause is CancelCause.DEADLINE

    @pytest.mark.parametrize("kind", ["returns-none", "async"])
    async def test_a_decorator_that_returns_no_executor_is_named_before_anything_runs(
        self, kind: str
    ) -> None:
        """A decorator that returns None, or one written async by mistake, is a
        ValidationError naming it when the flow is validated, not a failed flow later."""
        entered: list[Any] = []

        def returns_none(executor: StepExecutor) -> Any:
            return None

        async def by_mistake(executor: StepExecutor) -> StepExecutor:
            return executor

        decorator: Any = returns_none if kind == "returns-none" else by_mistake
        ex = FlowExecutor(handlers={"h": entered.append}, decorators=[decorator])
        with pytest.raises(ValidationError) as caught:
            await ex.run(Flow("f", Request("r", "h")))
        assert caught.value.field == "FlowExecutor.decorators[0]"
        assert caught.value.value is decorator
        assert entered == []

    def test_an_async_hook_is_named_when_the_executor_is_made(self) -> None:
        """A hook whose step_finished is async (it would never be awaited, so never run) is
        a ValidationError naming it."""

        class AsyncHook:
            async def step_finished(self, record: Any) -> None:
                pass

        with pytest.raises(ValidationError) as caught:
            FlowExecutor(hooks=[AsyncHook()])
        assert caught.value.field == "FlowExecutor.hooks[0]"
        assert "async" in str(caught.value)

    async def test_hooks_see_every_outcome_and_never_break_a_flow(self) -> None:
        """Hooks get each outcome; a hook that raises does not break the run."""

        class Broken:
            def step_finished(self, record: object, /) -> None:
                raise RuntimeError("hook bug")

        recorder = Recorder()
        ex = FlowExecutor(handlers={"ok": sleeper(0, "ok")}, hooks=[Broken(), recorder])
        result = await ex.run(Flow("f", Request("a", "ok")))
        assert result["a"] == "ok"
        assert [(o.name, o.step_type) for o in recorder.outcomes] == [
            ("a", "request"),
            ("f", "flow"),
        ]

    async def test_old_two_argument_hooks_still_work_with_a_deprecation_warning(self) -> None:
        """A hook written as step_finished(outcome, ctx) warns once and still gets both."""
        seen: list[tuple[str, str]] = []

        class Old:
            def step_finished(self, outcome: Any, ctx: Any, /) -> None:
                seen.append((outcome.name, ctx.flow_name))

        with pytest.warns(DeprecationWarning, match=r"step_finished\(outcome, ctx\) is deprecated"):
            ex = FlowExecutor(handlers={"ok": sleeper(0, "ok")}, hooks=[Old()], logging=False)
        await ex.run(Flow("f", Request("a", "ok")))
        assert seen == [("a", "f"), ("f", "f")]
