"""Handlers and hooks shared by the core tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from stepwatch import Outcome, StepContext


def sleeper(seconds: float, value: Any = None) -> Callable[[Any], Awaitable[Any]]:
    """An async handler that sleeps ``seconds`` then returns ``value`` (or its params)."""

    async def handler(params: Any) -> Any:
        await anyio.sleep(seconds)
        return params if value is None else value

    return handler


def failer(exc: BaseException, after: float = 0.0) -> Callable[[Any], Awaitable[Any]]:
    """An async handler that raises ``exc`` after ``after`` seconds."""

    async def handler(params: Any) -> Any:
        await anyio.sleep(after)
        raise exc

    return handler


class Recorder:
    """A StepHook that keeps every outcome in the order recorded."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def step_finished(self, outcome: Outcome, ctx: StepContext, /) -> None:
        self.outcomes.append(outcome)

    def by_name(self) -> dict[str, Outcome]:
        return {o.name: o for o in self.outcomes}
