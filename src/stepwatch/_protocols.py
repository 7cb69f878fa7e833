"""The protocols executors, decorators and hooks follow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._context import StepContext
    from ._outcome import Outcome
    from ._steps import Step

__all__ = ["ExecutorDecorator", "StepExecutor", "StepHook"]


@runtime_checkable
class StepExecutor(Protocol):
    """Runs one type of step.

    ``execute`` returns the step's value or raises; the :class:`FlowExecutor` turns that
    into the step's typed :class:`Outcome`. Composite executors run their children with
    ``await ctx.run_child(child, index=i)``, which applies every rule (deadlines, retries,
    telemetry) to the child and returns the child's :class:`Outcome`.
    """

    def can_execute(self, step: Step) -> bool: ...

    async def execute(self, step: Step, ctx: StepContext) -> Any: ...


class ExecutorDecorator(Protocol):
    """Wraps an executor in another executor (how tracing, metrics and logs are added)."""

    def __call__(self, executor: StepExecutor, /) -> StepExecutor: ...


class StepHook(Protocol):
    """Told about every step outcome as it is recorded (must be fast, must not raise)."""

    def step_finished(self, outcome: Outcome, ctx: StepContext, /) -> None: ...
