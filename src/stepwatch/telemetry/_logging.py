"""structlog decorator (STUB: to be implemented by the tracing/logging issue)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .._protocols import ExecutorDecorator, StepExecutor

__all__ = ["add_trace_ids", "make_logging_decorator"]


def make_logging_decorator() -> ExecutorDecorator:
    def decorate(executor: StepExecutor) -> StepExecutor:
        return executor

    return decorate


def add_trace_ids(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor adding ``trace_id``/``span_id`` (stub)."""
    return event_dict
