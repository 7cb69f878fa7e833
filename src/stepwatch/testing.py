"""Helpers for testing code that uses stepwatch.

Typical use, on trio's mock clock so deadline tests take no real time::

    from stepwatch.testing import OutcomeRecorder, blocking, sleeping, failing

    recorder = OutcomeRecorder()
    executor = FlowExecutor(handlers={"slow": sleeping(10), "boom": failing(OSError())},
                            hooks=[recorder], tracing=False, metrics=False)
    ...
    assert recorder["slow"].cause is CancelCause.DEADLINE
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ._outcome import Outcome, Status
from ._record import StepEnded

__all__ = ["OutcomeRecorder", "blocking", "failing", "hold_loop", "sleeping"]


def sleeping(seconds: float, value: Any = None) -> Callable[[Any], Awaitable[Any]]:
    """An async handler that sleeps ``seconds``, then returns ``value`` (or its params)."""

    async def handler(params: Any) -> Any:
        await anyio.sleep(seconds)
        return params if value is None else value

    return handler


def hold_loop(seconds: float) -> None:
    """Hold the event loop for ``seconds`` without yielding, as CPU-bound or blocking code does.

    On trio's ``MockClock`` the clock jumps ``seconds`` instead (no real time passes), so
    tests of blocking code stay fast and deterministic; elsewhere this is ``time.sleep``.
    """
    clock = _mock_clock()
    if clock is not None:
        clock.jump(seconds)
    else:
        time.sleep(seconds)


def _mock_clock() -> Any:
    try:
        import trio
        from trio.testing import MockClock
    except ImportError:  # pragma: no cover - trio is an optional dependency
        return None
    try:
        clock = trio.lowlevel.current_clock()
    except RuntimeError:  # not inside trio.run()
        return None
    return clock if isinstance(clock, MockClock) else None


def blocking(seconds: float, value: Any = None) -> Callable[[Any], Awaitable[Any]]:
    """An async handler that holds the event loop for ``seconds`` (see :func:`hold_loop`),
    then returns ``value`` (or its params) without ever awaiting: a misbehaving handler."""

    async def handler(params: Any) -> Any:
        hold_loop(seconds)
        return params if value is None else value

    return handler


def failing(error: BaseException, *, after: float = 0.0) -> Callable[[Any], Awaitable[Any]]:
    """An async handler that raises ``error`` after ``after`` seconds."""

    async def handler(params: Any) -> Any:
        await anyio.sleep(after)
        raise error

    return handler


class OutcomeRecorder:
    """A :class:`~stepwatch.StepHook` keeping every record and outcome, in the order
    recorded.

    ``recorder[name]`` is the last outcome of that step; ``recorder.outcomes`` all of them
    (the flow's own root outcome, ``step_type == "flow"``, included); ``recorder.records``
    the :class:`~stepwatch.StepEnded` records.
    """

    def __init__(self) -> None:
        self.records: list[StepEnded] = []
        self.outcomes: list[Outcome] = []

    def step_finished(self, record: StepEnded, /) -> None:
        self.records.append(record)
        self.outcomes.append(record.outcome)

    def __getitem__(self, name: str) -> Outcome:
        for outcome in reversed(self.outcomes):
            if outcome.name == name:
                return outcome
        raise KeyError(f"no outcome recorded for step {name!r}")

    def by_name(self) -> dict[str, Outcome]:
        """The last outcome of each step, by name."""
        return {o.name: o for o in self.outcomes}

    def with_status(self, status: Status) -> list[str]:
        """Names of the steps that ended with ``status``, in the order recorded."""
        return [o.name for o in self.outcomes if o.status is status]
