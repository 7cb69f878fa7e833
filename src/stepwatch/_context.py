"""Per-run and per-step state: deadlines, results so far, children's progress."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from anyio import CancelScope, current_time

from ._outcome import CancelCause, Outcome, Status
from ._workers import invoker_for

if TYPE_CHECKING:
    from ._executor import FlowExecutor, _Plan
    from ._steps import Flow, Step

__all__ = ["ChildProgress", "RunState", "StepContext"]


class RunState:
    """Everything one run owns; created fresh by every ``run()`` so nothing leaks."""

    __slots__ = (
        "executor",
        "flow",
        "input",
        "outcomes",
        "overruns",
        "plan",
        "run_id",
        "started",
        "values",
        "yielded_at",
    )

    def __init__(
        self, executor: FlowExecutor, flow: Flow, plan: _Plan, input: Any, run_id: str
    ) -> None:
        self.executor = executor
        self.flow = flow
        self.plan = plan
        self.input = input
        self.run_id = run_id
        self.values: dict[str, Any] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.started = current_time()
        # when a step boundary last yielded to the event loop; -inf makes the first
        # boundary of every run a full checkpoint (cancel point and schedule point)
        self.yielded_at = -math.inf
        # contexts of steps that ended after the deadline governing them (rare)
        self.overruns: list[StepContext] = []


class ChildProgress:
    """Outcomes of a composite step's children, by declaration index (O(1) per child)."""

    __slots__ = ("outcomes", "steps")

    def __init__(self, steps: tuple[Step, ...]) -> None:
        self.steps = steps
        self.outcomes: list[Outcome | None] = [None] * len(steps)

    def record(self, index: int, outcome: Outcome) -> None:
        self.outcomes[index] = outcome

    def fill_unstarted(self, cause: CancelCause) -> list[Outcome]:
        """Mark every child without an outcome as cancelled (never started); return them."""
        filled = []
        for i, outcome in enumerate(self.outcomes):
            if outcome is None:
                step = self.steps[i]
                outcome = Outcome(
                    name=step.name,
                    step_type=step.type,
                    status=Status.CANCELLED,
                    elapsed=0.0,
                    attempts=0,
                    cause=cause,
                )
                self.outcomes[i] = outcome
                filled.append(outcome)
        return filled

    def partial(self) -> dict[str, Any]:
        """Values of the children that produced one, in declaration order."""
        return {o.name: o.value for o in self.outcomes if o is not None and o.ok}

    def pending(self) -> list[str]:
        """Names of the children that have not finished (running, cut off, never started)."""
        return [
            self.steps[i].name
            for i, o in enumerate(self.outcomes)
            if o is None or o.status is Status.CANCELLED
        ]

    def by_name(self) -> dict[str, Outcome]:
        return {o.name: o for o in self.outcomes if o is not None}


class StepContext:
    """What a step sees while it runs; also what ``params``/``fn``/``condition`` receive.

    Public attributes:
        input: the flow's input.
        results: values of the steps that finished so far, by name (read-only view).
        flow_name, run_id: the run's identity.
        step: the step being run (``None`` for the run's root context).
        timeout: the step's resolved budget in seconds (``None`` = unbounded).
        deadline: the effective deadline on anyio's clock (``math.inf`` if none).
        attempt: the current attempt (1-based).
        iteration: for a loop body, the 0-based iteration; else ``None``.
    """

    __slots__ = (
        "_run",
        "attempt",
        "cancel_reason",
        "deadline",
        "detached",
        "error",
        "index",
        "iteration",
        "late",
        "overrun",
        "own_deadline",
        "parent",
        "progress",
        "scope",
        "scoped",
        "started",
        "status",
        "step",
        "telemetry",
        "timeout",
    )

    def __init__(
        self,
        run: RunState,
        parent: StepContext | None,
        step: Step | None,
        *,
        timeout: float | None,
        started: float,
        deadline: float,
        own_deadline: float,
        scoped: bool,
        index: int | None = None,
    ) -> None:
        self._run = run
        self.parent = parent
        self.step = step
        self.timeout = timeout
        self.started = started
        self.deadline = deadline
        self.own_deadline = own_deadline
        self.scoped = scoped
        self.index = index
        self.iteration: int | None = parent.iteration if parent is not None else None
        self.attempt = 0
        self.cancel_reason: CancelCause | None = None
        self.progress: ChildProgress | None = None
        # set by the deadline guard when it returns a non-plain value
        self.status: Status | None = None
        self.error: BaseException | None = None
        # the cancel scope of the current attempt, when this step owns its deadline
        self.scope: CancelScope | None = None
        # seconds this step ran past the deadline governing it (it returned or raised
        # instead of being stopped: it blocked the event loop or ignored cancellation)
        self.overrun: float | None = None
        # what such a step produced after its deadline (value, or the exception)
        self.late: Any = None
        # free slot for telemetry decorators (e.g. the current span); never read by the core
        self.telemetry: Any = None
        self.detached = False

    # -- public, read-only view -------------------------------------------------------
    @property
    def input(self) -> Any:
        return self._run.input

    @property
    def results(self) -> Mapping[str, Any]:
        return self._run.values

    @property
    def flow_name(self) -> str:
        return self._run.flow.name

    @property
    def flow(self) -> Flow:
        return self._run.flow

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def executor(self) -> FlowExecutor:
        return self._run.executor

    def remaining(self) -> float:
        """Seconds left before the effective deadline (``math.inf`` if none)."""
        if self.deadline == math.inf:
            return math.inf
        return max(0.0, self.deadline - current_time())

    # -- for executors --------------------------------------------------------------------
    def track_children(self, steps: tuple[Step, ...]) -> ChildProgress:
        """Start recording the children's outcomes (used to build partial/pending)."""
        self.progress = ChildProgress(steps)
        return self.progress

    async def run_child(self, step: Step, *, index: int | None = None) -> Outcome:
        """Run a child step under this step's deadline and return its :class:`Outcome`.

        Failures and timeouts of the child come back as outcomes (``outcome.error``);
        cancellation propagates. ``index`` is the child's position for progress tracking.
        """
        return await self._run.executor._run_step(step, self, index)

    def close_children(self, cause: CancelCause) -> None:
        """Record every tracked child that never started as cancelled with ``cause``."""
        if self.progress is None:
            return
        for outcome in self.progress.fill_unstarted(cause):
            self._run.executor._record_extra(self, outcome)

    def record_replaced(self, outcome: Outcome) -> None:
        """Record a child outcome replaced by this step (a cut-off child's fallback)."""
        if outcome.ok:
            self._run.values[outcome.name] = outcome.value
        self._run.executor._record_extra(self, outcome)

    def cancel_cause(self) -> CancelCause:
        """Why work under this context is being cancelled right now.

        Walks from this context outwards: the innermost explicit reason (a fail-fast or
        quorum cancel) or expired owned deadline wins; if none, the cancel came from
        outside the run.
        """
        now = current_time()
        ctx: StepContext | None = self
        while ctx is not None:
            if ctx.cancel_reason is not None:
                return ctx.cancel_reason
            if ctx.scoped and now >= ctx.own_deadline:
                return CancelCause.DEADLINE
            ctx = ctx.parent
        return CancelCause.OUTSIDE

    async def call(self, fn: Callable[[Any], Any], arg: Any, *, inline: bool = False) -> Any:
        """Call ``fn(arg)``: awaited if async, else in a tracked worker thread (or inline).

        A sync call in a worker thread is abandoned when the deadline expires (the step
        still ends on time); the thread is counted until it finishes.
        """
        return await self._run.executor._workers.call(invoker_for(fn), arg, self, inline=inline)
