"""OpenTelemetry tracing decorator (STUB: to be implemented by the tracing issue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._protocols import ExecutorDecorator, StepExecutor

__all__ = ["TracingConfig", "make_tracing_decorator"]


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """Tracing options (stub)."""


def make_tracing_decorator(config: TracingConfig, *, tracer_provider: Any) -> ExecutorDecorator:
    def decorate(executor: StepExecutor) -> StepExecutor:
        return executor

    return decorate
