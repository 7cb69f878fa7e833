"""The protocols executors, decorators, hooks and instrumentation follow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._context import StepContext
    from ._record import StepEnded
    from ._steps import Step

__all__ = ["ExecutorDecorator", "Instrumentation", "StepExecutor", "StepHook"]


@runtime_checkable
class StepExecutor(Protocol):
    """Runs one type of step.

    ``execute`` returns the step's value or raises; the :class:`FlowExecutor` turns that
    into the step's typed :class:`Outcome`. Composite executors run their children with
    ``await ctx.run_child(child, index=i)``, which applies every rule (deadlines, retries,
    telemetry) to the child and returns the child's :class:`Outcome`. An executor uses
    only the public :class:`StepContext` API (the built-in ones do too).
    """

    def can_execute(self, step: Step) -> bool: ...

    async def execute(self, step: Step, ctx: StepContext) -> Any: ...


class ExecutorDecorator(Protocol):
    """Wraps an executor in another executor (around the deadline guard)."""

    def __call__(self, executor: StepExecutor, /) -> StepExecutor: ...


class StepHook(Protocol):
    """Told about every step that ends, as it is recorded (must be fast, must not raise;
    a plain method: it is called, never awaited, so an ``async def`` one is refused).

    ``record`` is the :class:`StepEnded` every telemetry integration also receives. A
    hook written for the old ``step_finished(outcome, ctx)`` still works, with a
    ``DeprecationWarning`` when it is registered.
    """

    def step_finished(self, record: StepEnded, /) -> None: ...


class Instrumentation(Protocol):
    """How telemetry observes steps: called by the executor at every step's start and end,
    in the step's own task, around its execution (so a span made current at the start is
    current while the step runs and while ``step_ended`` runs). Must never raise."""

    def step_started(self, ctx: StepContext, /) -> object:
        """The step starts; return whatever ``step_ended`` needs back (a span, a token)."""
        ...

    def step_ended(self, record: StepEnded, token: object, /) -> None:
        """The step ended, as ``record`` says; ``token`` is what ``step_started`` returned."""
        ...
