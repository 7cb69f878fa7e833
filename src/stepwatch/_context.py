"""Per-run and per-step state.

:class:`StepContext` has two faces. Handlers' callables (``params``, ``fn``,
``condition``) and hooks see a small read-only view: the flow's input, the results so far,
the deadline, the attempt, the iteration. Executors (built-in and user-registered alike)
also use its executor API: run children, record their progress, call user callables,
cancel children with a cause. Everything else is the executor's internal state, kept in
private slots whose invariants are written where they are declared.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from anyio import CancelScope
from anyio.lowlevel import checkpoint, current_token

from ._checkpoints import deliver_expired, host_task, raise_swallowed_cancel
from ._outcome import CancelCause, Outcome, Status
from ._text import listing
from ._workers import awaited, invoker_for

if TYPE_CHECKING:
    from ._executor import FlowExecutor, _Plan
    from ._steps import Flow, Step

__all__ = ["ChildProgress", "Progress", "RunState", "StepContext", "describe_children"]

_SUCCEEDED = Status.SUCCEEDED


class RunState:
    """Everything one run owns; created fresh by every ``run()`` so nothing leaks."""

    __slots__ = (
        "cancel_check",
        "clock",
        "executor",
        "flow",
        "host",
        "host_cancels",
        "input",
        "outcomes",
        "overruns",
        "plan",
        "results",
        "run_id",
        "started",
        "steps_started",
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
        # values of the steps that produced one, by name (RunResult's mapping), and the
        # read-only view callables get as ctx.results
        self.values: dict[str, Any] = {}
        self.results: Mapping[str, Any] = MappingProxyType(self.values)
        # the last outcome recorded for each step, by name
        self.outcomes: dict[str, Outcome] = {}
        # the event loop's clock and cancel check, looked up once per run (anyio's
        # current_time() finds the backend on every call)
        self.clock, self.cancel_check = _backend()
        # on asyncio, the task run() was called in and its pending cancel requests then:
        # a request made during the run that a handler swallowed is raised again at the
        # next step boundary (see _checkpoints.raise_swallowed_cancel); None on trio
        self.host, self.host_cancels = host_task()
        self.started = self.clock()
        # step executions begun so far: each context's _seq (see cancel_children)
        self.steps_started = 0
        # when a step boundary last yielded to the event loop; -inf makes the first
        # boundary of every run a full checkpoint (cancel point and schedule point)
        self.yielded_at = -math.inf
        # contexts of steps that ended after the deadline governing them (rare)
        self.overruns: list[StepContext] = []


def _backend() -> tuple[Callable[[], float], Callable[[], Awaitable[None]]]:
    """The running event loop's clock and its ``checkpoint_if_cancelled``."""
    token = current_token()
    native = token.native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        clock: Callable[[], float] = native.time  # what anyio's current_time() reads
        if type(native).time is asyncio.BaseEventLoop.time:
            clock = time.monotonic  # what BaseEventLoop.time() returns, one call less
    else:
        clock = token.backend_class.current_time
    return clock, token.backend_class.checkpoint_if_cancelled


class Progress(Protocol):
    """What a composite step reports about its children when it times out or fails."""

    @property
    def outcomes(self) -> list[Outcome | None]:
        """One slot per child (``None``: not finished or never started)."""
        ...

    def partial(self) -> dict[str, Any]:
        """Values of the children that produced one, by name, in declaration order."""
        ...

    def pending(self) -> list[str]:
        """Names of the children that had not finished."""
        ...

    def by_name(self) -> dict[str, Outcome]:
        """The children's outcomes, by name."""
        ...

    def describe(self) -> str:
        """A clause for an error message, e.g. ``"; 2 of 3 children finished (a, b)"``."""
        ...


class ChildProgress:
    """Outcomes of a composite step's children, by declaration index (O(1) per child).

    Made by :meth:`StepContext.track_children`; the executor records each child's outcome
    at its index as :meth:`StepContext.run_child` returns it.
    """

    __slots__ = ("outcomes", "steps")

    def __init__(self, steps: tuple[Step, ...]) -> None:
        self.steps = steps
        self.outcomes: list[Outcome | None] = [None] * len(steps)

    def record(self, index: int, outcome: Outcome) -> None:
        """Set the outcome of the child at ``index``."""
        self.outcomes[index] = outcome

    def unstarted(self, cause: CancelCause) -> list[Outcome]:
        """Mark every child without an outcome as cancelled (never started); return them."""
        filled = []
        for i, outcome in enumerate(self.outcomes):
            if outcome is None:
                step = self.steps[i]
                outcome = Outcome(step.name, step.type, Status.CANCELLED, attempts=0, cause=cause)
                self.outcomes[i] = outcome
                filled.append(outcome)
        return filled

    def partial(self) -> dict[str, Any]:
        """Values of the children that produced one, in declaration order."""
        # o.ok, without a property call per child (a timed-out fan-out of 10 000 children
        # builds this while its caller waits)
        return {
            o.name: o.value
            for o in self.outcomes
            if o is not None and (o.status is _SUCCEEDED or o.recovered)
        }

    def pending(self) -> list[str]:
        """Names of the children that had not finished (running, cut off, never started)."""
        return [
            self.steps[i].name
            for i, o in enumerate(self.outcomes)
            if o is None or o.status is Status.CANCELLED
        ]

    def by_name(self) -> dict[str, Outcome]:
        """The children's outcomes, by name, in declaration order."""
        return {o.name: o for o in self.outcomes if o is not None}

    def describe(self) -> str:
        """``"; k of n children finished (a, b); still pending: c"``."""
        return describe_children(len(self.steps), self.partial(), self.pending())


def describe_children(total: int, partial: Mapping[str, Any], pending: list[str]) -> str:
    """:meth:`ChildProgress.describe` from its parts, for a caller that has them already."""
    detail = f"; {len(partial)} of {total} children finished"
    if partial:
        detail += f" ({listing(list(partial))})"
    if pending:
        detail += f"; still pending: {listing(pending)}"
    return detail


class StepContext:
    """What a step sees while it runs; also what ``params``/``fn``/``condition`` receive.

    Read-only view, for user callables and hooks:
        input: the flow's input.
        results: values of the steps that finished so far, by name (read-only).
        flow_name, run_id: the run's identity.
        step: the step being run (``None`` for the caller's root context).
        parent: the enclosing step's context (``None`` at the root).
        started: when the step started, on anyio's clock.
        timeout: the step's resolved budget in seconds (``None`` = unbounded).
        deadline: the effective deadline on anyio's clock (``math.inf`` if none): the
            earliest of the step's own deadline and every enclosing one.
        remaining(): seconds left before that deadline; elapsed(): since the step started.
        attempt: the current attempt (1-based; 0 before the first).
        iteration: for a step inside a loop body, the loop's 0-based iteration.
        index: the step's position among its parent's tracked children, if tracked.

    The executor API (:meth:`run_child`, :meth:`track_children`, :meth:`call`, ...) is for
    step executors, built-in and user-registered alike; see each method.
    """

    # Internal state. Invariants hold from construction until the step's outcome is
    # recorded; the deadline guard (re)sets the per-attempt ones before every attempt.
    __slots__ = (  # noqa: RUF023 - in the order that explains them
        # the run this execution belongs to; never changes
        "_run",
        # the enclosing execution; None only for the caller's root context of a run
        "_parent",
        # the step definition; None only for the caller's root context
        "_step",
        # the resolved own budget in seconds (None = unbounded); fixed for the execution
        "_timeout",
        # when the execution started (anyio clock); fixed
        "_started",
        # when the current attempt started (== _started for the first one)
        "_attempt_started",
        # _attempt_started + _timeout, or inf: the step's own deadline this attempt
        "_own_deadline",
        # True iff _own_deadline < _parent._deadline at the attempt's start: the step owns
        # its deadline and the guard opens a cancel scope for it (else it would only
        # repeat an enclosing scope's deadline, at a cost)
        "_scoped",
        # the effective deadline: _own_deadline if _scoped else _parent._deadline; hence
        # always <= every enclosing _deadline (deadlines nest)
        "_deadline",
        # the cancel scope of the current attempt while inside it, if _scoped, else None
        "_scope",
        # attempts started so far (0 before the first)
        "_attempt",
        # position among the parent's tracked children, or None
        "_index",
        # the enclosing loop's iteration (inherited from the parent), or None
        "_iteration",
        # set by the executor just before it cancels its own children (fail-fast, quorum);
        # None otherwise. Read by cancel_cause() from the cancelled children: it applies
        # to the executions begun up to then, _seq <= _cancel_seq (a child the executor
        # starts afterwards, outside the cancelled scope, was not cut off by it)
        "_cancel_reason",
        "_cancel_seq",
        # this execution's place in the order the run's executions began (1, 2, ...)
        "_seq",
        # the children's outcomes once the executor tracks them, else None
        "_progress",
        # how a step that returned ended when that is not a plain success:
        # TIMED_OUT (returned partial results after its own deadline), FALLBACK, or
        # SUCCEEDED (returned although part of its work failed: mark_recovered);
        # None while running and for plain values; reset by every attempt
        "_status",
        # the error behind a FALLBACK / partial / recovered value, else None
        "_error",
        # seconds the step ran past the deadline governing it when it returned or raised
        # instead of being stopped (None otherwise); _late is what it produced then
        "_overrun",
        "_late",
        # when the step's value, error or cancellation reached the guard (anyio clock);
        # the one end-time reading every observer uses. nan until then.
        "_end",
        # the executor's recovery for an expired own deadline (on_timeout="partial"),
        # or None; reset by every attempt
        "_recover",
        # (error, retryable) once the guard has asked the retry predicate about the error
        # it gives up with, so that nobody asks again (the predicate runs once per error);
        # None otherwise; reset by every attempt
        "_verdict",
    )

    def __init__(
        self,
        run: RunState,
        parent: StepContext | None,
        step: Step | None,
        timeout: float | None,
        started: float,
        index: int | None = None,
    ) -> None:
        self._run = run
        self._parent = parent
        self._step = step
        self._timeout = timeout
        self._started = started
        self._index = index
        self._iteration: int | None = parent._iteration if parent is not None else None
        self._attempt = 0
        self._seq = run.steps_started = run.steps_started + 1
        self._cancel_seq = 0
        self._begin_attempt(started)

    def _begin_attempt(self, now: float) -> None:
        """Start an attempt at ``now``: the per-attempt state cleared, and a fresh own
        deadline (``now + _timeout``) clamped by the parent's (deadlines nest). Called for
        the first attempt by ``__init__`` and for every retry by the deadline guard."""
        self._attempt_started = now
        self._cancel_reason: CancelCause | None = None
        self._progress: Progress | None = None
        self._status: Status | None = None
        self._error: BaseException | None = None
        self._overrun: float | None = None
        self._late: Any = None
        self._end = math.nan
        self._recover: Callable[[BaseException], Any] | None = None
        self._verdict: tuple[BaseException, bool] | None = None
        self._scope: CancelScope | None = None
        parent = self._parent
        parent_deadline = parent._deadline if parent is not None else math.inf
        timeout = self._timeout
        own = now + timeout if timeout is not None else math.inf
        self._own_deadline = own
        self._scoped = own < parent_deadline
        self._deadline: float = own if self._scoped else parent_deadline

    @classmethod
    def _root(cls, run: RunState, deadline: float) -> StepContext:
        """The caller's context of a run: no step, the caller's effective deadline."""
        ctx = cls(run, None, None, None, run.started)
        ctx._deadline = deadline
        return ctx

    def __repr__(self) -> str:
        step = self._step
        what = f"{step.type} {step.name!r}" if step is not None else "root"
        return f"<StepContext {what} of flow {self._run.flow.name!r}>"

    # -- the read-only view -------------------------------------------------------------
    @property
    def input(self) -> Any:
        """The flow's input (what ``run()`` was given)."""
        return self._run.input

    @property
    def results(self) -> Mapping[str, Any]:
        """Values of the steps that finished so far, by name (read-only)."""
        return self._run.results

    @property
    def flow_name(self) -> str:
        """The flow's name."""
        return self._run.flow.name

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._run.run_id

    @property
    def step(self) -> Step | None:
        """The step being run (``None`` for the caller's root context)."""
        return self._step

    @property
    def parent(self) -> StepContext | None:
        """The enclosing step's context (``None`` for the root)."""
        return self._parent

    @property
    def started(self) -> float:
        """When the step started, on anyio's clock (``anyio.current_time()``)."""
        return self._started

    @property
    def timeout(self) -> float | None:
        """The step's resolved budget in seconds (``None`` = unbounded)."""
        return self._timeout

    @property
    def deadline(self) -> float:
        """The effective deadline on anyio's clock (``math.inf`` if none)."""
        return self._deadline

    @property
    def attempt(self) -> int:
        """The current attempt, 1-based (0 before the first)."""
        return self._attempt

    @property
    def iteration(self) -> int | None:
        """The enclosing loop's 0-based iteration, or ``None`` outside a loop."""
        return self._iteration

    @property
    def index(self) -> int | None:
        """The step's position among its parent's tracked children, or ``None``."""
        return self._index

    def elapsed(self) -> float:
        """Seconds since the step started (all attempts)."""
        return self._run.clock() - self._started

    def remaining(self) -> float:
        """Seconds left before the effective deadline (``math.inf`` if none)."""
        if self._deadline == math.inf:
            return math.inf
        return max(0.0, self._deadline - self._run.clock())

    # -- the executor API ------------------------------------------------------------------
    def run_child(self, step: Step, *, index: int | None = None) -> Awaitable[Outcome]:
        """Run a child step under this step's deadline; await its :class:`Outcome`.

        The child gets every rule: the deadline (never more time than this step has
        left), retries, fallback, telemetry, hooks. Failures and timeouts of the child
        come back as outcomes (``outcome.error``); cancellation propagates. ``index`` is
        the child's position for :meth:`track_children`.
        """
        return self._run.executor._run_step(step, self, index)

    def track_children(self, steps: tuple[Step, ...]) -> ChildProgress:
        """Start recording the children's outcomes, by index (partial results, pending
        children, never-started children and the counts in telemetry come from it)."""
        progress = ChildProgress(steps)
        self._progress = progress
        return progress

    def track(self, progress: Progress) -> None:
        """Report this step's children through ``progress`` (for executors whose children
        are not a fixed list, such as a loop's iterations)."""
        self._progress = progress

    def close_children(self, cause: CancelCause | None = None) -> None:
        """Record every tracked child that never started as cancelled (``attempts == 0``)
        with ``cause`` (by default :meth:`cancel_cause`)."""
        progress = self._progress
        if not isinstance(progress, ChildProgress):
            return
        if cause is None:
            cause = self.cancel_cause()
        self._run.executor._record_unstarted(self, progress.unstarted(cause))

    def cancel_children(self, scope: CancelScope, cause: CancelCause) -> None:
        """Cancel ``scope`` (the scope the children run in), recording why: the children
        cut off by it end ``cancelled`` with ``cause``."""
        self._cancel_reason = cause
        self._cancel_seq = self._run.steps_started
        scope.cancel()

    def cancel_cause(self) -> CancelCause:
        """Why work under this context is being cancelled right now.

        Walks from this context outwards: the innermost explicit reason (a fail-fast or
        quorum cancel) or expired owned deadline wins; if none, the cancel came from
        outside the run.
        """
        return self._cause_of(0)

    def _cause_of(self, seq: int) -> CancelCause:
        """:meth:`cancel_cause` for the execution ``seq`` (its ``_seq``; 0: any) under this
        context: an explicit reason counts only if that execution had begun when it was
        given."""
        now = self._run.clock()
        ctx: StepContext | None = self
        while ctx is not None:
            if ctx._cancel_reason is not None and seq <= ctx._cancel_seq:
                return ctx._cancel_reason
            if ctx._scoped and now >= ctx._own_deadline:
                return CancelCause.DEADLINE
            ctx = ctx._parent
        return CancelCause.OUTSIDE

    async def checkpoint(self) -> None:
        """A checkpoint for executors: yields to the event loop, and raises the backend's
        cancellation if the caller was cancelled or a deadline governing this step has
        passed, even when the event loop has not acted on that deadline yet (it was
        busy). Call it between children that may not await."""
        run = self._run
        now = run.clock()
        if now >= self._deadline:
            await deliver_expired(self, now)
        else:
            await checkpoint()
        raise_swallowed_cancel(run)

    def set_iteration(self, iteration: int | None) -> None:
        """Set the loop iteration this step's callables and children see."""
        self._iteration = iteration

    def on_timeout(self, recover: Callable[[BaseException], Any]) -> None:
        """Recover from this step's own expired deadline: ``recover(error)`` returns the
        step's value instead (the outcome is ``timed_out`` with ``recovered=True``), or
        raises. Used by ``Parallel(on_timeout="partial")``; reset by every attempt."""
        self._recover = recover

    def mark_recovered(self, error: BaseException) -> None:
        """Say that the value this step is about to return was made although part of its
        work failed (``error`` says what): the outcome is ``succeeded`` with
        ``recovered=True`` and ``error``, and the flow goes on. Used by
        ``Parallel(on_failure="partial")``; reset by every attempt."""
        self._status = Status.SUCCEEDED
        self._error = error

    def record_replaced(self, outcome: Outcome) -> None:
        """Record an outcome that replaces a child's (a cut-off child's fallback)."""
        if outcome.ok:
            self._run.values[outcome.name] = outcome.value
        self._run.executor._record_unstarted(self, [outcome])

    def call(self, fn: Callable[[Any], Any], arg: Any, *, inline: bool = False) -> Awaitable[Any]:
        """Call a user callable ``fn(arg)``; await the result: awaited if async; if sync,
        run in a worker thread (abandoned at the deadline, counted), or inline when
        ``inline`` (for fast, non-blocking callables). An awaitable returned by a sync
        callable is awaited."""
        invoker = invoker_for(fn)
        if invoker.is_async:
            return invoker.fn(arg)  # type: ignore[no-any-return]  # its coroutine
        if inline:
            return awaited(invoker.fn(arg))
        return self._run.executor._workers.call(invoker, arg, self)

    def call_handler(self, method: str, params: Any) -> Awaitable[Any]:
        """Call the handler registered for ``method`` with ``params`` (as :meth:`call`);
        await the result."""
        invoker = self._run.executor._handler(method)
        if invoker.is_async:
            return invoker.fn(params)  # type: ignore[no-any-return]  # its coroutine
        return self._run.executor._workers.call(invoker, params, self)
