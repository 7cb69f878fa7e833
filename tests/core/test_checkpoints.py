"""run() and every step boundary are checkpoints: a caller's cancellation always propagates,
no handler is entered for a caller that has already given up, and steps that never await
still let other tasks run."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import pytest

from stepwatch import (
    CancelCause,
    Flow,
    Loop,
    Parallel,
    Request,
    Sequence,
    Step,
    Transform,
)
from stepwatch.testing import OutcomeRecorder, hold_loop

from .helpers import quiet

pytestmark = pytest.mark.anyio


class Entered:
    """Handlers that count how often they were entered."""

    def __init__(self) -> None:
        self.count = 0

    async def handler(self, params: Any) -> Any:
        self.count += 1
        return params

    def sync_handler(self, params: Any) -> Any:
        self.count += 1
        return params


def shapes() -> list[Step]:
    return [
        Request("one", "h"),
        Sequence("seq", [Request("a", "h"), Request("b", "h")]),
        Parallel("par", [Request("a", "h"), Request("b", "h")]),
        Request("sync", "s"),
    ]


@pytest.mark.parametrize("step", shapes(), ids=lambda s: s.name)
class TestCallerAlreadyGaveUp:
    async def test_cancelled_scope_propagates_and_enters_no_handler(self, step: Step) -> None:
        """run() in an already-cancelled scope raises the cancellation (caught by the caller's
        scope) and calls no handler."""
        entered = Entered()
        recorder = OutcomeRecorder()
        ex = quiet(handlers={"h": entered.handler, "s": entered.sync_handler}, hooks=[recorder])
        after = False
        with anyio.CancelScope() as scope:
            scope.cancel()
            await ex.run(Flow("f", step))
            after = True
        assert scope.cancelled_caught
        assert not after
        assert entered.count == 0
        assert recorder.outcomes == []

    @pytest.mark.virtual_time
    async def test_expired_caller_deadline_propagates_and_enters_no_handler(
        self, step: Step
    ) -> None:
        """run() after the caller's deadline has passed (the loop was busy) raises the
        cancellation and calls no handler."""
        entered = Entered()
        ex = quiet(handlers={"h": entered.handler, "s": entered.sync_handler})
        with anyio.move_on_after(0.05) as scope:
            hold_loop(0.1)  # the deadline passes while nothing yields
            await ex.run(Flow("f", step))
        assert scope.cancelled_caught
        assert entered.count == 0


class TestCallerCancelsDuringTheRun:
    @pytest.mark.virtual_time
    async def test_cancel_from_inside_a_loop_of_inline_steps_stops_at_the_next_step(
        self,
    ) -> None:
        """A caller cancel made while only inline steps run is seen at the next step boundary."""
        done: list[int] = []
        recorder = OutcomeRecorder()

        with anyio.CancelScope() as scope:

            def step(ctx: Any) -> None:
                done.append(ctx.iteration)
                if ctx.iteration == 4:
                    scope.cancel()

            flow = Flow("f", Loop("loop", Transform("t", step, inline=True), times=100))
            await quiet(hooks=[recorder]).run(flow)
        assert scope.cancelled_caught
        assert done == [0, 1, 2, 3, 4]
        assert recorder["loop"].cause is CancelCause.OUTSIDE

    @pytest.mark.virtual_time
    async def test_caller_deadline_expiring_during_inline_steps_is_outside(self) -> None:
        """The caller's deadline passing while inline steps hold the loop cancels the run at
        the next boundary with cause outside, never as a timeout."""
        recorder = OutcomeRecorder()

        def step(ctx: Any) -> None:
            hold_loop(0.01)

        flow = Flow("f", Loop("loop", Transform("t", step, inline=True), times=100))
        with anyio.move_on_after(0.05) as scope:
            await quiet(hooks=[recorder]).run(flow)
        assert scope.cancelled_caught
        assert recorder["loop"].cause is CancelCause.OUTSIDE
        assert len([o for o in recorder.outcomes if o.name == "t"]) <= 6


@dataclass(frozen=True, slots=True, eq=False)
class Paused(Step):
    """A user step type whose executor awaits a callable, then checkpoints."""

    type: ClassVar[str] = "paused"


async def swallow(params: Any) -> str:
    """A badly behaved handler: waits, and returns normally when it is cancelled."""
    try:
        await anyio.sleep(10)
    except anyio.get_cancelled_exc_class():
        return "swallowed"
    return "slept"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
class TestNativeAsyncioCancelSwallowedByAHandler:
    """asyncio raises a native cancel (``Task.cancel()``, ``asyncio.timeout``) once; a
    handler that swallows it must not let the run go on (trio has no such cancel)."""

    @pytest.mark.parametrize("last", [False, True], ids=["then-a-step", "last-step"])
    async def test_task_cancel_is_raised_again_at_the_next_boundary(
        self, anyio_backend: Any, last: bool
    ) -> None:
        """task.cancel() swallowed by a handler is raised at the next step boundary (or at
        the end of run()), so no later handler runs and the task ends cancelled."""
        import asyncio

        entered = Entered()
        recorder = OutcomeRecorder()
        steps = [Request("a", "swallow")] + ([] if last else [Request("b", "h")])
        ex = quiet(handlers={"swallow": swallow, "h": entered.handler}, hooks=[recorder])
        task = asyncio.ensure_future(ex.run(Flow("f", steps)))
        await asyncio.sleep(0.05)  # the run is in the handler's sleep
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert entered.count == 0
        assert recorder["a"].value == "swallowed"
        if not last:
            assert recorder["b"].attempts == 0  # never started: recorded as cancelled
            assert recorder["b"].cause is CancelCause.OUTSIDE

    async def test_asyncio_timeout_fires_although_a_handler_swallowed_it(
        self, anyio_backend: Any
    ) -> None:
        """The caller's asyncio.timeout() becomes its TimeoutError although the handler it
        interrupted swallowed the cancellation; the next step never starts."""
        import asyncio

        entered = Entered()
        ex = quiet(handlers={"swallow": swallow, "h": entered.handler})
        flow = Flow("f", [Request("a", "swallow"), Request("b", "h")])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await ex.run(flow)
        assert entered.count == 0

    async def test_an_executors_checkpoint_raises_a_swallowed_cancel(
        self, anyio_backend: Any
    ) -> None:
        """StepContext.checkpoint() raises the caller's cancel that a callable the executor
        awaited swallowed, as it promises executors."""
        import asyncio

        after: list[str] = []

        class Pause:
            def can_execute(self, step: Step) -> bool:
                return isinstance(step, Paused)

            async def execute(self, step: Step, ctx: Any) -> Any:
                value = await ctx.call(swallow, None)
                await ctx.checkpoint()
                after.append(value)
                return value

        ex = quiet()
        ex.register(Paused, Pause())
        task = asyncio.ensure_future(ex.run(Flow("f", Paused("p"))))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert after == []

    async def test_a_handlers_own_asyncio_timeout_is_not_the_callers_cancel(
        self, anyio_backend: Any
    ) -> None:
        """A handler whose own asyncio.timeout() fires and is handled leaves the run going:
        only cancel requests still pending count."""
        import asyncio

        async def bounded(params: Any) -> str:
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(10)
            except TimeoutError:
                return "gave up"
            return "slept"

        entered = Entered()
        ex = quiet(handlers={"bounded": bounded, "h": entered.handler})
        result = await ex.run(Flow("f", [Request("a", "bounded"), Request("b", "h", "b")]))
        assert dict(result) == {"a": "gave up", "b": "b"}
        assert entered.count == 1

    async def test_a_cancel_swallowed_before_run_is_not_raised_by_it(
        self, anyio_backend: Any
    ) -> None:
        """A cancel request the caller's own code swallowed before calling run() is the
        caller's business: run() counts only those that arrive during the run."""
        import asyncio

        async def caller() -> dict[str, Any]:
            # swallowed, without uncancel(): the task stays "cancelling"
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)
            assert asyncio.current_task().cancelling() == 1  # type: ignore[union-attr]
            ex = quiet(handlers={"h": Entered().handler})
            return dict(await ex.run(Flow("f", [Request("a", "h", 1), Request("b", "h", 2)])))

        task = asyncio.ensure_future(caller())
        await asyncio.sleep(0.01)
        task.cancel()
        assert await task == {"a": 1, "b": 2}


class TestRunIsACheckpoint:
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_run_of_inline_steps_lets_other_tasks_run(self, anyio_backend: Any) -> None:
        """On asyncio (FIFO scheduling) a task scheduled before run() runs during it, even if
        no step awaits (trio shuffles its run queue: see the next test)."""
        ran = False

        async def other() -> None:
            nonlocal ran
            ran = True

        flow = Flow("f", Transform("t", lambda ctx: 1, inline=True))
        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            await quiet().run(flow)
            assert ran

    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_trio_sees_a_checkpoint(self, anyio_backend: Any) -> None:
        """On trio, run() passes trio.testing.assert_checkpoints for a flow of inline steps."""
        from trio.testing import assert_checkpoints

        flow = Flow("f", Transform("t", lambda ctx: 1, inline=True))
        with assert_checkpoints():
            await quiet().run(flow)


class TestFairness:
    @pytest.mark.parametrize("kind", ["inline", "cache_hit"])
    async def test_other_tasks_run_while_a_long_loop_never_awaits(self, kind: str) -> None:
        """A loop of 5 000 steps that never await (0.5 s of CPU in all) leaves no gap over
        50 ms of CPU time for other tasks (CPU time of this thread, so that a loaded
        machine preempting the process does not count)."""
        gaps: list[float] = []
        stop = anyio.Event()

        async def ticker() -> None:
            last = time.thread_time()
            while not stop.is_set():
                await anyio.sleep(0)
                now = time.thread_time()
                gaps.append(now - last)
                last = now

        def burn() -> None:  # 100 µs of CPU without awaiting
            start = time.thread_time()
            while time.thread_time() - start < 1e-4:
                pass

        def work(ctx: Any) -> int:
            burn()
            return 1

        async def hit(params: Any) -> int:
            burn()
            return 1

        body: Step = Transform("t", work, inline=True) if kind == "inline" else Request("t", "hit")
        flow = Flow("f", Loop("loop", body, times=5_000))
        ex = quiet(handlers={"hit": hit})
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.sleep(0)
            started = time.thread_time()
            await ex.run(flow)
            took = time.thread_time() - started
            stop.set()
        assert took >= 0.5
        # the loop yields every 2 ms: the ticker never waits anywhere near the run's 0.5 s
        # (real time on a shared machine: a generous margin)
        assert max(gaps) < 0.2, (max(gaps), took)
        assert len(gaps) > 2
