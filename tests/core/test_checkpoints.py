"""run() and every step boundary are checkpoints: a caller's cancellation always propagates,
no handler is entered for a caller that has already given up, and steps that never await
still let other tasks run."""

from __future__ import annotations

import time
from typing import Any

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
