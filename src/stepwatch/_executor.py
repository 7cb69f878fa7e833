"""FlowExecutor: the registry of step executors, plans, and the one path every step takes.

The core knows no particular step type and no telemetry: the built-in executors and the
telemetry integration reach it through :func:`set_defaults`, called once by the package
(``stepwatch/__init__.py``), as anyio's core reaches its backends only through their
interface. Everything an observer needs about a step that ended is built here once, as a
:class:`~stepwatch.StepEnded`.
"""

from __future__ import annotations

import difflib
import inspect
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio import current_effective_deadline
from anyio.lowlevel import checkpoint_if_cancelled

from ._checkpoints import YIELD_INTERVAL, enter, raise_swallowed_cancel
from ._context import ChildProgress, RunState, StepContext
from ._errors import StepwatchError, ValidationError, left_a_run
from ._guard import DeadlineGuard, step_failed
from ._outcome import CancelCause, Outcome, Status, new_outcome
from ._protocols import ExecutorDecorator, Instrumentation, StepExecutor, StepHook
from ._record import (
    DEFAULT_NEAR_TIMEOUT,
    StepEnded,
    arose_here,
    budget_ratio,
    checked_near_timeout,
    child_counts,
    error_type,
    new_record,
)
from ._result import RunResult
from ._steps import Flow, Step, _FlowStep
from ._text import encodable
from ._timeouts import TimeoutOptions, TimeoutValue, coerce_options, resolve_timeout
from ._workers import DEFAULT_MAX_THREADS, Invoker, WorkerTracker, invoker_for

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry

__all__ = ["FlowExecutor", "TelemetryOptions", "set_defaults"]


@dataclass(frozen=True, slots=True)
class TelemetryOptions:
    """The telemetry arguments of a :class:`FlowExecutor`, handed to the instrumentation
    factory as given (it validates them)."""

    tracing: Any
    tracer_provider: Any
    metrics: Any
    registry: Any
    logging: Any
    near_timeout: float | None
    step_types: frozenset[str]


InstrumentationFactory = Callable[[TelemetryOptions, WorkerTracker], Instrumentation | None]


class _Defaults:
    """What the package plugs into the core once (see the module docstring)."""

    __slots__ = ("executors", "instrumentation", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executors: Callable[[], dict[str, StepExecutor]] = dict
        self.instrumentation: InstrumentationFactory | None = None


_defaults = _Defaults()


def set_defaults(
    *,
    executors: Callable[[], dict[str, StepExecutor]],
    instrumentation: InstrumentationFactory | None,
) -> None:
    """Plug the built-in executors and the telemetry into every later FlowExecutor
    (internal: called by ``stepwatch/__init__.py``)."""
    with _defaults.lock:
        _defaults.executors = executors
        _defaults.instrumentation = instrumentation


class _Plan:
    """Everything decided once per (executor, flow): chains and resolved timeouts."""

    __slots__ = ("entries", "root")

    def __init__(
        self, root: _FlowStep, entries: dict[int, tuple[StepExecutor, float | None]]
    ) -> None:
        self.root = root
        self.entries = entries


class _LegacyHook:
    """Calls a hook written for ``step_finished(outcome, ctx)`` (deprecated)."""

    __slots__ = ("hook",)

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def step_finished(self, record: StepEnded, /) -> None:
        self.hook.step_finished(record.outcome, record.context)


def _hook(value: object, where: str) -> StepHook:
    method = getattr(value, "step_finished", None)
    if not callable(method):
        raise ValidationError(
            f"{where} must be a StepHook (with a step_finished(record) method); got {value!r}",
            field=where,
            value=value,
        )
    if inspect.iscoroutinefunction(method):
        raise ValidationError(
            f"{where}.step_finished must be a plain (sync) method: hooks are called, never "
            f"awaited, in the step's task; got the async {method!r} (hand slow work to a "
            "task or a queue from a sync step_finished)",
            field=where,
            value=value,
        )
    try:
        params = [
            p
            for p in inspect.signature(method).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) >= 2:
        warnings.warn(
            f"{where}: step_finished(outcome, ctx) is deprecated; write "
            "step_finished(record) and read record.outcome and record.context",
            DeprecationWarning,
            stacklevel=4,
        )
        return _LegacyHook(value)
    return value  # type: ignore[return-value]


def _items(name: str, items: Any) -> tuple[Any, ...]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ValidationError(
            f"FlowExecutor.{name} must be a list; got {items!r}",
            field=f"FlowExecutor.{name}",
            value=items,
        )
    return tuple(items)


class FlowExecutor:
    """Runs flows: holds the handlers, the executor registry and the defaults.

    Args:
        handlers: method name → callable ``handler(params)``, async or sync (sync ones run
            in worker threads, abandoned at their deadline).
        timeouts: executor-level per-type timeouts (a :class:`TimeoutOptions` or one
            number used as the default); below the flow's options in the resolution order.
        decorators: :class:`ExecutorDecorator` s wrapped around every executor, built-in
            and user-registered alike (outside the deadline guard).
        hooks: :class:`StepHook` s told about every step that ends
            (``hook.step_finished(record)`` with a :class:`StepEnded`).
        tracing: ``False`` switches spans off; a :class:`~stepwatch.telemetry.TracingConfig`
            sets options.
        tracer_provider: OpenTelemetry ``TracerProvider``; the global one if ``None``.
        metrics: ``False`` switches metrics off; a
            :class:`~stepwatch.telemetry.MetricsConfig` sets options.
        registry: prometheus-client ``CollectorRegistry``; the default one if ``None``.
        logging: ``False`` switches the log events off.
        max_threads: at most this many sync handlers run at once in worker threads; a
            thread abandoned at its deadline keeps its place until its function returns
            (see :class:`WorkerTracker`).
        near_timeout: share of its budget above which a step that succeeded or failed is
            *near its timeout*: one setting for the span event, the log event and the
            budget-ratio histogram's bucket edge; ``None`` switches it off.

    Raises:
        ValidationError: a handler that is not callable, a bad timeout value, an option of
            the wrong type (``tracing="off"``, ``hooks=[1]``, ...).

    A ``FlowExecutor`` is reusable and safe to share between concurrent runs: every run
    gets fresh state.
    """

    def __init__(
        self,
        *,
        handlers: Mapping[str, Callable[[Any], Any]] | None = None,
        timeouts: TimeoutOptions | TimeoutValue = None,
        decorators: Iterable[ExecutorDecorator] = (),
        hooks: Iterable[StepHook] = (),
        tracing: Any = True,
        tracer_provider: TracerProvider | None = None,
        metrics: Any = True,
        registry: CollectorRegistry | None = None,
        logging: bool = True,
        max_threads: int = DEFAULT_MAX_THREADS,
        near_timeout: float | None = DEFAULT_NEAR_TIMEOUT,
    ) -> None:
        handlers = {} if handlers is None else handlers
        if not isinstance(handlers, Mapping):
            raise ValidationError(
                f"FlowExecutor.handlers must be a mapping of method name to callable; "
                f"got {handlers!r}",
                field="FlowExecutor.handlers",
                value=handlers,
            )
        decorators = _items("decorators", decorators)
        for i, decorator in enumerate(decorators):
            if not callable(decorator):
                raise ValidationError(
                    f"FlowExecutor.decorators[{i}] must be a callable executor decorator; "
                    f"got {decorator!r}",
                    field=f"FlowExecutor.decorators[{i}]",
                    value=decorator,
                )
        self._hooks: tuple[StepHook, ...] = tuple(
            _hook(h, f"FlowExecutor.hooks[{i}]") for i, h in enumerate(_items("hooks", hooks))
        )
        self._near = checked_near_timeout(near_timeout, "FlowExecutor.near_timeout")
        self._handlers: dict[str, Invoker] = {}
        self._plans: weakref.WeakKeyDictionary[Flow, _Plan] = weakref.WeakKeyDictionary()
        for method, handler in handlers.items():
            self.add_handler(method, handler)
        self._timeouts = coerce_options("FlowExecutor.timeouts", timeouts)
        self._decorators: list[ExecutorDecorator] = list(decorators)
        self._executors: dict[str, StepExecutor] = _defaults.executors()
        self._chains: dict[str, StepExecutor] = {}
        self._workers = WorkerTracker(max_threads)
        factory = _defaults.instrumentation
        options = TelemetryOptions(
            tracing=tracing,
            tracer_provider=tracer_provider,
            metrics=metrics,
            registry=registry,
            logging=logging,
            near_timeout=self._near,
            step_types=frozenset(self._executors),
        )
        self._instrumentation: Instrumentation | None = (
            factory(options, self._workers) if factory is not None else None
        )

    # -- configuration -------------------------------------------------------------------
    @property
    def timeouts(self) -> TimeoutOptions | None:
        """The executor-level timeouts; assigning new ones applies to the next runs."""
        return self._timeouts

    @timeouts.setter
    def timeouts(self, value: TimeoutOptions | TimeoutValue) -> None:
        self._timeouts = coerce_options("FlowExecutor.timeouts", value)
        self._plans.clear()

    def add_handler(self, method: str, handler: Callable[[Any], Any]) -> None:
        """Register (or replace) the handler for ``method``."""
        if not isinstance(method, str) or not method:
            raise ValidationError(
                f"handler names must be non-empty strings; got {method!r}",
                field="FlowExecutor.handlers",
                value=method,
            )
        if not callable(handler):
            raise ValidationError(
                f"handler {method!r} must be callable; got {handler!r}",
                field=f"FlowExecutor.handlers[{method!r}]",
                value=handler,
            )
        self._handlers[method] = invoker_for(handler)
        self._plans.clear()

    def register(
        self, step_type: str | type[Step], executor: StepExecutor, *, replace: bool = False
    ) -> None:
        """Register ``executor`` for a step type (a ``Step`` subclass or its ``type`` name).

        The executor is wrapped like the built-in ones (deadlines, retries, telemetry).

        Raises:
            ValidationError: the type is already registered and ``replace`` is false, or
                ``executor`` does not follow the :class:`StepExecutor` protocol.
        """
        if isinstance(step_type, type) and issubclass(step_type, Step):
            name = step_type.type
        elif isinstance(step_type, str) and step_type:
            name = step_type
        else:
            raise ValidationError(
                f"a step type is a non-empty name or a Step subclass; got {step_type!r}",
                field="FlowExecutor.register.step_type",
                value=step_type,
            )
        if isinstance(executor, type):
            raise ValidationError(
                f"executor for step type {name!r} must be an instance; got the class "
                f"{executor.__qualname__} (write {executor.__qualname__}())",
                field="FlowExecutor.register.executor",
                value=executor,
            )
        if not isinstance(executor, StepExecutor):
            raise ValidationError(
                f"executor for step type {name!r} must have can_execute(step) and async "
                f"execute(step, ctx); got {executor!r}",
                field="FlowExecutor.register.executor",
                value=executor,
            )
        if name in self._executors and not replace:
            raise ValidationError(
                f"an executor for step type {name!r} is already registered; pass "
                "replace=True to replace it",
                field="FlowExecutor.register.step_type",
                value=name,
            )
        self._executors[name] = executor
        self._chains.pop(name, None)
        self._plans.clear()

    def add_decorator(self, decorator: ExecutorDecorator) -> None:
        """Wrap every executor (present and future) in ``decorator``."""
        if not callable(decorator):
            raise ValidationError(
                f"a decorator must be callable; got {decorator!r}",
                field="FlowExecutor.decorators",
                value=decorator,
            )
        self._decorators.append(decorator)
        self._chains.clear()
        self._plans.clear()

    @property
    def workers(self) -> WorkerTracker:
        """The worker threads of sync callables and their counts (see
        :class:`WorkerTracker`)."""
        return self._workers

    def _chain(self, step_type: str) -> StepExecutor:
        chain = self._chains.get(step_type)
        if chain is None:
            chain = DeadlineGuard(self._executors[step_type])
            for i, decorator in enumerate(self._decorators):
                made: object = decorator(chain)
                if not isinstance(made, StepExecutor) or inspect.isawaitable(made):
                    if inspect.iscoroutine(made):
                        made.close()  # an async decorator: its coroutine is never awaited
                    raise ValidationError(
                        f"FlowExecutor.decorators[{i}] ({decorator!r}) must return a step "
                        f"executor (can_execute(step), async execute(step, ctx)); it "
                        f"returned {made!r}",
                        field=f"FlowExecutor.decorators[{i}]",
                        value=decorator,
                    )
                chain = made
            self._chains[step_type] = chain
        return chain

    def _handler(self, method: str) -> Invoker:
        try:
            return self._handlers[method]
        except KeyError:
            raise ValidationError(
                f"no handler registered for method {method!r}",
                field="FlowExecutor.handlers",
                value=method,
            ) from None

    # -- planning ----------------------------------------------------------------------------
    def _plan(self, flow: Flow) -> _Plan:
        if not isinstance(flow, Flow):
            raise ValidationError(
                f"run() needs a stepwatch.Flow; got {flow!r} ({type(flow).__name__}): wrap "
                "steps as Flow(name, steps)",
                field="FlowExecutor.run.flow",
                value=flow,
            )
        plan = self._plans.get(flow)
        if plan is None:
            plan = self._make_plan(flow)
            self._plans[flow] = plan
        return plan

    def _make_plan(self, flow: Flow) -> _Plan:
        if not isinstance(flow, Flow):
            raise ValidationError(
                f"run() needs a stepwatch.Flow; got {flow!r} ({type(flow).__name__})",
                field="FlowExecutor.run.flow",
                value=flow,
            )
        root = _FlowStep(flow.name, flow.steps, timeout=flow.timeout)
        entries: dict[int, tuple[StepExecutor, float | None]] = {
            id(root): (self._entry(root, flow), flow.timeout)
        }
        for step in flow.walk():
            entries[id(step)] = (self._entry(step, flow), self._timeout(step, flow))
        return _Plan(root, entries)

    def _timeout(self, step: Step, flow: Flow) -> float | None:
        return resolve_timeout(
            step.type, step.timeout_seconds, step.default_timeout, flow.timeouts, self._timeouts
        )

    def _entry(self, step: Step, flow: Flow) -> StepExecutor:
        raw = self._executors.get(step.type)
        where = f"Flow({flow.name!r}) step {type(step).__name__}({step.name!r})"
        if raw is None:
            raise ValidationError(
                f"{where}: no executor is registered for step type {step.type!r} (known: "
                f"{', '.join(sorted(self._executors))}); use FlowExecutor.register()",
                field=f"{step.name}.type",
                value=step.type,
            )
        if not raw.can_execute(step):
            raise ValidationError(
                f"{where}: the executor registered for {step.type!r} ({raw!r}) cannot execute it",
                field=f"{step.name}.type",
                value=step.type,
            )
        for method in step.handlers():
            if method not in self._handlers:
                close = difflib.get_close_matches(method, self._handlers, n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                known = ", ".join(map(repr, sorted(self._handlers))) or "none"
                raise ValidationError(
                    f"{where}: no handler registered for method {method!r} (known: {known}){hint}",
                    field=f"{step.name}.method",
                    value=method,
                )
        return self._chain(step.type)

    def validate(self, flow: Flow) -> None:
        """Check ``flow`` against this executor now (handlers, step types) instead of at
        the first ``run()``.

        Raises:
            ValidationError: a missing handler or an unregistered step type.
        """
        self._plan(flow)

    # -- running -------------------------------------------------------------------------------
    async def run(self, flow: Flow, input: Any = None, *, run_id: str | None = None) -> RunResult:
        """Run ``flow`` with ``input`` and return its :class:`RunResult`.

        ``run()`` is a checkpoint: if the caller has already been cancelled (or its
        deadline has passed) the cancellation is raised and no handler is called.

        ``run_id`` names the run in spans and log events (``RunResult.run_id``); a fresh one
        is made when it is ``None`` or empty.

        Raises:
            ValidationError: the flow does not fit this executor, or ``run_id`` is not a
                string UTF-8 can encode (checked before anything runs).
            StepTimeoutError: a step's own deadline expired (and it had no fallback).
            FlowTimeoutError: the whole-flow deadline expired.
            StepFailedError: a step raised.

        Every error carries ``.result`` with what was computed before it. Cancellation from
        outside propagates unchanged (never reported as a timeout).
        """
        plan = self._plan(flow)
        if run_id is not None:
            _check_run_id(run_id)
        run = RunState(self, flow, plan, input, run_id or uuid.uuid4().hex)
        caller = StepContext._root(run, current_effective_deadline())
        outcome = await self._run_step(plan.root, caller, None)
        # a cancel point at the end too: a handler that swallowed the caller's cancel
        # must not turn it into a normal return
        await checkpoint_if_cancelled()
        raise_swallowed_cancel(run)
        values = run.values
        result = RunResult(
            flow_name=flow.name,
            run_id=run.run_id,
            values=values,
            outcomes=run.outcomes,
            elapsed=outcome.elapsed,
            output=values.get(flow.steps[-1].name),
            input=input,
        )
        if outcome.error is not None and not outcome.recovered:
            error = outcome.error
            if isinstance(error, StepwatchError):
                error.result = result
            raise error
        return result

    async def _run_step(self, step: Step, parent: StepContext, index: int | None) -> Outcome:
        """Run one step under ``parent``: the single path every step takes."""
        run = parent._run
        entry = run.plan.entries.get(id(step))
        if entry is None:  # a step built at run time by a custom executor
            entry = (self._entry(step, run.flow), self._timeout(step, run.flow))
        chain, timeout = entry
        # the step boundary is a checkpoint: the step may never start (see _checkpoints)
        now = run.clock()
        if now >= parent._deadline or now - run.yielded_at >= YIELD_INTERVAL:
            now = await enter(parent, now)
        else:
            await run.cancel_check()
        raise_swallowed_cancel(run)  # a native cancel a handler swallowed
        ctx = StepContext(run, parent, step, timeout, now, index)
        instrumentation = self._instrumentation
        token: object = None
        if instrumentation is not None:
            try:
                token = instrumentation.step_started(ctx)
            except Exception:  # telemetry never breaks a flow
                token = None
        try:
            value = await chain.execute(step, ctx)
        except anyio.get_cancelled_exc_class():
            end = _end_of(ctx)
            owned = ctx._scoped and end >= ctx._own_deadline
            cause = _DEADLINE if owned else parent._cause_of(ctx._seq)
            late = ctx._late
            failed = isinstance(late, BaseException)
            outcome = new_outcome(
                step.name,
                step.type,
                Status.CANCELLED,
                None if failed else late,
                late if failed else None,
                end - now,
                ctx._attempt,
                cause,
                timeout,
                False,
                ctx._overrun,
            )
            self._ended(ctx, outcome, end, instrumentation, token, late if failed else None)
            raise
        except Exception as exc:
            end = _end_of(ctx)
            status = Status.TIMED_OUT if ctx._status is Status.TIMED_OUT else Status.FAILED
            error: Exception = exc
            if not isinstance(exc, StepwatchError) or left_a_run(exc):
                error = step_failed(step, ctx, exc, end - now)
            outcome = new_outcome(
                step.name,
                step.type,
                status,
                ctx._late if status is Status.TIMED_OUT else None,
                error,
                end - now,
                ctx._attempt,
                None,
                timeout,
                False,
                ctx._overrun,
            )
            self._ended(ctx, outcome, end, instrumentation, token, exc)
            return outcome
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: recorded, then raised
            end = _end_of(ctx)
            outcome = new_outcome(
                step.name,
                step.type,
                Status.FAILED,
                None,
                exc,
                end - now,
                ctx._attempt,
                None,
                timeout,
            )
            self._ended(ctx, outcome, end, instrumentation, token, exc)
            raise
        end = ctx._end
        if end != end:  # nan: nothing stamped it (see _end_of)
            end = run.clock()
        recovered = ctx._status
        outcome = new_outcome(
            step.name,
            step.type,
            _SUCCEEDED if recovered is None else recovered,
            value,
            ctx._error,
            end - now,
            ctx._attempt,
            None,
            timeout,
            recovered is not None,
            ctx._overrun,
        )
        if parent._step is not None:
            run.values[step.name] = value
        self._ended(ctx, outcome, end, instrumentation, token, ctx._error)
        return outcome

    def _ended(
        self,
        ctx: StepContext,
        outcome: Outcome,
        end: float,
        instrumentation: Instrumentation | None,
        token: object,
        raised: BaseException | None,
    ) -> None:
        """Record ``outcome``; tell the instrumentation and the hooks (never raises).

        ``raised`` is the exception as the step raised it (see StepEnded.exception)."""
        parent = ctx._parent
        assert parent is not None
        assert ctx._step is not None
        if parent._step is not None:
            ctx._run.outcomes[outcome.name] = outcome
            progress = parent._progress
            if ctx._index is not None and progress is not None:
                progress.record(ctx._index, outcome)  # type: ignore[attr-defined]
        hooks = self._hooks
        if instrumentation is None and not hooks:
            return
        try:
            record = self._record(ctx._step, ctx, outcome, end, raised)
        except Exception:  # pragma: no cover - a bug here must not break a flow
            return
        if instrumentation is not None:
            try:  # noqa: SIM105 - hot path: suppress() would build an object per step
                instrumentation.step_ended(record, token)
            except Exception:
                pass
        for hook in hooks:
            try:
                hook.step_finished(record)
            except Exception:  # a hook never breaks a flow
                continue

    def _record(
        self,
        step: Step,
        ctx: StepContext,
        outcome: Outcome,
        end: float,
        raised: BaseException | None = None,
    ) -> StepEnded:
        """Build the one record of a step that ended (see StepEnded)."""
        status = outcome.status
        if status is _SUCCEEDED:
            ratio = budget_ratio(status, outcome.timeout, end - ctx._attempt_started)
            near = self._near
            children = None
            cancelled = None
            if step.concurrent and isinstance(ctx._progress, ChildProgress):
                children, cancelled = child_counts(ctx._progress.outcomes)
            return new_record(
                step,
                ctx,
                outcome,
                end,
                None,
                None,
                False,
                ratio,
                near is not None and ratio is not None and ratio > near,
                (),
                children,
                cancelled,
            )
        error = outcome.error
        ratio = (
            budget_ratio(status, outcome.timeout, end - ctx._attempt_started)
            if outcome.attempts
            else None
        )
        near = self._near
        pending: tuple[str, ...] = ()
        if status is Status.TIMED_OUT or status is Status.FALLBACK:
            found = getattr(error, "pending", None)
            if found is not None:
                pending = tuple(found)
            elif ctx._progress is not None and ctx._step is step:
                pending = tuple(ctx._progress.pending())
        children = cancelled = None
        if ctx._step is step and step.concurrent and isinstance(ctx._progress, ChildProgress):
            children, cancelled = child_counts(ctx._progress.outcomes)
        return new_record(
            step,
            ctx,
            outcome,
            end,
            raised,
            error_type(status, raised, outcome.overrun),
            status is not Status.CANCELLED and arose_here(step, raised),
            ratio,
            status is Status.FAILED and near is not None and ratio is not None and ratio > near,
            pending,
            children,
            cancelled,
        )

    def _record_unstarted(self, ctx: StepContext, outcomes: list[Outcome]) -> None:
        """Record outcomes a composite made for its children (never started, replaced)."""
        run = ctx._run
        hooks = self._hooks
        progress = ctx._progress
        steps = progress.steps if isinstance(progress, ChildProgress) else ()
        by_name = {s.name: s for s in steps} if hooks else {}
        # when they ended: now (the composite records them before its own end is stamped)
        ended = ctx._end if ctx._end == ctx._end else run.clock()
        for outcome in outcomes:
            run.outcomes[outcome.name] = outcome
            if not hooks:
                continue
            step = by_name.get(outcome.name)
            if step is None:
                continue
            record = StepEnded(step, ctx, outcome, ended)
            for hook in hooks:
                try:
                    hook.step_finished(record)
                except Exception:
                    continue


_SUCCEEDED = Status.SUCCEEDED
_DEADLINE = CancelCause.DEADLINE


def _check_run_id(run_id: object) -> None:
    """A run id given to run(): a string that telemetry can export (see ``encodable``)."""
    if not isinstance(run_id, str):
        raise ValidationError(
            f"run_id must be a string or None; got {run_id!r} ({type(run_id).__name__})",
            field="FlowExecutor.run.run_id",
            value=run_id,
        )
    if not encodable(run_id):
        raise ValidationError(
            f"run_id must be encodable as UTF-8 (spans and log events export it as UTF-8 "
            f"text); got {run_id!r}, which holds a surrogate code point",
            field="FlowExecutor.run.run_id",
            value=run_id,
        )


def _end_of(ctx: StepContext) -> float:
    """The end time the guard stamped (read the clock only if nothing stamped it)."""
    end = ctx._end
    return end if end == end else ctx._run.clock()
