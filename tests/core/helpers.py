"""Handlers, hooks and executors shared by the core tests (and a few others): the public
stepwatch.testing helpers under their short names, and what they lack."""

from __future__ import annotations

from typing import Any

import anyio

from stepwatch import FlowExecutor
from stepwatch.testing import OutcomeRecorder as Recorder
from stepwatch.testing import failing as failer
from stepwatch.testing import hold_loop
from stepwatch.testing import sleeping as sleeper

__all__ = ["Recorder", "cpu_after_io", "failer", "quiet", "sleeper"]


def quiet(**kwargs: Any) -> FlowExecutor:
    """A ``FlowExecutor`` without tracing, metrics or logging; ``kwargs`` as it takes them."""
    return FlowExecutor(tracing=False, metrics=False, logging=False, **kwargs)


async def cpu_after_io(params: Any) -> Any:
    """Awaits once, then holds the loop for 10 ms: I/O followed by CPU work. Returns its
    params."""
    await anyio.sleep(0)
    hold_loop(0.01)
    return params
