"""Sync handlers in worker threads: a bounded thread budget, queued is not abandoned,
exhaustion by abandoned threads is a clear error, and abandoned threads never hold up the
interpreter's exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from stepwatch import (
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Status,
    StepTimeoutError,
    ValidationError,
    WorkersExhaustedError,
)
from tests.helpers import sample

pytestmark = pytest.mark.anyio


class Stuck:
    """A sync handler that blocks until released (at most 10 s), counting entries."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0
        self.lock = threading.Lock()

    def __call__(self, params: Any) -> str:
        with self.lock:
            self.entered += 1
        self.release.wait(10)
        return "done"


def wait_until(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return bool(check())


def abandoned_gauge(registry: CollectorRegistry) -> float:
    return sample(registry, "stepwatch_abandoned_workers", flow="f", step_type="request")


class TestQueuedIsNotAbandoned:
    async def test_only_running_threads_count_as_abandoned(self) -> None:
        """Six stuck children with two threads: two abandoned, four cancelled while queued
        (never run, not counted), and the count returns to zero when the threads finish."""
        stuck = Stuck()
        registry = CollectorRegistry()
        ex = FlowExecutor(
            handlers={"stuck": stuck}, max_threads=2, registry=registry, tracing=False
        )
        flow = Flow("f", Parallel("g", [Request(f"c{i}", "stuck") for i in range(6)], timeout=0.2))
        try:
            with pytest.raises(StepTimeoutError) as info:
                await ex.run(flow)
            assert all(o.status is Status.CANCELLED for o in info.value.outcomes.values())
            assert ex.workers.abandoned == 2
            assert ex.workers.abandoned_total == 2
            assert abandoned_gauge(registry) == 2
        finally:
            stuck.release.set()
        assert wait_until(lambda: ex.workers.abandoned == 0)
        assert ex.workers.finished_late_total == 2
        assert abandoned_gauge(registry) == 0
        time.sleep(0.05)
        assert stuck.entered == 2  # the queued calls never ran later


class TestThreadBudget:
    async def test_abandoned_threads_never_exceed_the_budget_and_exhaustion_is_an_error(
        self,
    ) -> None:
        """Five runs of four stuck handlers on a budget of four start at most four threads;
        once all four are abandoned, a sync call fails at once naming the cause."""
        stuck = Stuck()
        ex = FlowExecutor(handlers={"stuck": stuck}, max_threads=4, tracing=False, metrics=False)
        flow = Flow("f", Parallel("g", [Request(f"c{i}", "stuck") for i in range(4)], timeout=0.1))
        before = threading.active_count()
        try:
            with pytest.raises(StepTimeoutError):
                await ex.run(flow)
            assert ex.workers.abandoned == 4
            for _ in range(4):
                start = anyio.current_time()
                with pytest.raises(Exception) as info:
                    await ex.run(Flow("f", Request("r", "stuck", timeout=5)))
                assert anyio.current_time() - start < 1.0  # fails fast, not at the deadline
                err = info.value
                assert isinstance(err, WorkersExhaustedError), repr(err)
                assert err.step_name == "r"
                assert "4" in str(err) and "abandoned" in str(err)
                assert err.retryable
            assert threading.active_count() - before <= 4
            assert stuck.entered == 4
        finally:
            stuck.release.set()
        assert wait_until(lambda: ex.workers.abandoned == 0)
        result = await ex.run(Flow("f", Request("r", "stuck", timeout=5)))
        assert result["r"] == "done"

    async def test_busy_threads_queue_callers_instead_of_failing(self) -> None:
        """Live (not abandoned) threads make further calls wait for a slot: at most
        max_threads run at once and all finish."""
        running = 0
        peak = 0
        lock = threading.Lock()

        def work(params: Any) -> int:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            return int(params)

        ex = FlowExecutor(handlers={"work": work}, max_threads=2, tracing=False, metrics=False)
        flow = Flow("f", Parallel("g", [Request(f"c{i}", "work", i) for i in range(6)], timeout=5))
        result = await ex.run(flow)
        assert result["g"] == {f"c{i}": i for i in range(6)}
        assert peak == 2
        assert ex.workers.abandoned_total == 0

    @pytest.mark.parametrize("value", [0, -1, 1.5, "4", True])
    def test_max_threads_is_validated(self, value: Any) -> None:
        """max_threads must be an int >= 1."""
        with pytest.raises(ValidationError) as info:
            FlowExecutor(max_threads=value)
        assert info.value.field == "FlowExecutor.max_threads"


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import anyio
    from stepwatch import Flow, FlowExecutor, Request, StepTimeoutError

    def stuck(params):
        time.sleep(10)

    async def main():
        ex = FlowExecutor(handlers={"stuck": stuck}, tracing=False, metrics=False, logging=False)
        try:
            await ex.run(Flow("f", Request("r", "stuck", timeout=0.1)))
        except StepTimeoutError:
            print("timed out", flush=True)

    anyio.run(main, backend=sys.argv[1])
    """
)


class TestThreadsThatCannotStart:
    async def test_a_thread_that_cannot_start_gives_its_place_back(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A sync call whose worker thread cannot start (a pids or memory limit) fails with
        that error, and its place in the budget and the thread count are given back, so
        the next sync calls run."""
        from stepwatch import StepFailedError
        from stepwatch._workers import _Thread

        def refuse(self: threading.Thread) -> None:
            raise RuntimeError("can't start new thread")

        ex = FlowExecutor(
            handlers={"sync": lambda params: params}, max_threads=1, tracing=False, metrics=False
        )
        flow = Flow("f", Request("r", "sync", "ran", timeout=5, retry=None))
        with monkeypatch.context() as patch:
            patch.setattr(_Thread, "start", refuse)
            for _ in range(2):  # with the budget of one taken for good, the second waited
                with pytest.raises(StepFailedError) as info:
                    await ex.run(flow)
                assert isinstance(info.value.__cause__, RuntimeError)
        assert (ex.workers.running, ex.workers.threads) == (0, 0)
        assert (await ex.run(flow))["r"] == "ran"


class TestInterpreterExit:
    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_an_abandoned_thread_does_not_delay_exit(self, backend: str) -> None:
        """A process whose handler is stuck for 10 s exits right after its 0.1 s timeout."""
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, backend],
            capture_output=True,
            text=True,
            timeout=30,
        )
        took = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "timed out"
        assert took < 5.0, took
