"""Handlers, hooks and executors shared by the core tests (and a few others): the public
stepwatch.testing helpers under their short names, and what they lack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from stepwatch import FlowExecutor
from stepwatch.testing import OutcomeRecorder as Recorder
from stepwatch.testing import failing as failer
from stepwatch.testing import hold_loop
from stepwatch.testing import sleeping as sleeper

__all__ = ["Flaky", "Recorder", "cpu_after_io", "failer", "quiet", "sleeper"]


def quiet(**kwargs: Any) -> FlowExecutor:
    """A ``FlowExecutor`` without tracing, metrics or logging; ``kwargs`` as it takes them."""
    return FlowExecutor(tracing=False, metrics=False, logging=False, **kwargs)


async def cpu_after_io(params: Any) -> Any:
    """Awaits once, then holds the loop for 10 ms: I/O followed by CPU work. Returns its
    params."""
    await anyio.sleep(0)
    hold_loop(0.01)
    return params


class Flaky:
    """A backend failing its first calls: raises ``errors`` in turn, one per call (an
    exception, or a factory called for a fresh one), then returns ``value``.

    ``calls`` holds the (anyio) time of every call. Every call first waits ``delay``
    seconds; with ``hang=True`` a failing call then sleeps 100 s before it raises (a
    timeout cuts it off first). ``Flaky.times(n, error)`` fails ``n`` times the same way.
    """

    def __init__(
        self,
        *errors: BaseException | Callable[[], BaseException],
        value: Any = "ok",
        delay: float = 0.0,
        hang: bool = False,
    ) -> None:
        self.errors = list(errors)
        self.value = value
        self.delay = delay
        self.hang = hang
        self.calls: list[float] = []

    @classmethod
    def times(cls, failures: int, error: BaseException | None = None, **options: Any) -> Flaky:
        """Fails ``failures`` times with ``error`` (by default a ConnectionError, which
        stepwatch retries), then answers."""
        return cls(*[error or ConnectionError("reset by peer")] * failures, **options)

    async def __call__(self, params: Any) -> Any:
        self.calls.append(anyio.current_time())
        call = len(self.calls)
        if self.delay:
            await anyio.sleep(self.delay)
        if call <= len(self.errors):
            if self.hang:
                await anyio.sleep(100)
            error = self.errors[call - 1]
            raise error() if callable(error) else error
        return self.value

    def gaps(self) -> list[float]:
        """The time between each call and the next."""
        return [b - a for a, b in zip(self.calls, self.calls[1:], strict=False)]
