"""Handlers and hooks shared by the core tests (the public stepwatch.testing helpers)."""

from __future__ import annotations

from stepwatch.testing import OutcomeRecorder as Recorder
from stepwatch.testing import failing as failer
from stepwatch.testing import sleeping as sleeper

__all__ = ["Recorder", "failer", "sleeper"]
