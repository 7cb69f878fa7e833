"""Handlers, hooks and executors shared by the core tests (and a few others): the public
stepwatch.testing helpers under their short names, and what they lack."""

from __future__ import annotations

from typing import Any

from stepwatch import FlowExecutor
from stepwatch.testing import OutcomeRecorder as Recorder
from stepwatch.testing import failing as failer
from stepwatch.testing import sleeping as sleeper

__all__ = ["Recorder", "failer", "quiet", "sleeper"]


def quiet(**kwargs: Any) -> FlowExecutor:
    """A ``FlowExecutor`` without tracing, metrics or logging; ``kwargs`` as it takes them."""
    return FlowExecutor(tracing=False, metrics=False, logging=False, **kwargs)
