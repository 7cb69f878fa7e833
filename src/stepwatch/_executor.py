"""FlowExecutor: the registry of step executors, plans, and ``run()``."""

from __future__ import annotations

import difflib
import math
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
from anyio import current_effective_deadline, current_time
from anyio.lowlevel import checkpoint_if_cancelled

from ._checkpoints import enter
from ._context import RunState, StepContext
from ._errors import StepFailedError, StepwatchError, ValidationError
from ._guard import DeadlineGuard
from ._outcome import CancelCause, Outcome, Status
from ._protocols import ExecutorDecorator, StepExecutor, StepHook
from ._result import RunResult
from ._retry import is_retryable
from ._steps import Flow, Request, Step
from ._timeouts import TimeoutOptions, TimeoutValue, coerce_options, resolve_timeout
from ._workers import DEFAULT_MAX_THREADS, Invoker, WorkerTracker, invoker_for
from .telemetry import MetricsConfig, TracingConfig, build_decorators

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry

__all__ = ["FlowExecutor"]


@dataclass(frozen=True, slots=True, eq=False)
class FlowStep(Step):
    """The root of a run: runs the flow's steps in order under the whole-flow deadline."""

    type: ClassVar[str] = "flow"

    steps: tuple[Step, ...]

    def children(self) -> tuple[Step, ...]:
        return self.steps


def _retryable(step: Step, exc: Exception) -> bool:
    policy = step.retry_policy
    return is_retryable(exc) if policy is None else bool(policy.retry_on(exc))


class _Plan:
    """Everything decided once per (executor, flow): chains and resolved timeouts."""

    __slots__ = ("entries", "root")

    def __init__(self, root: FlowStep, entries: dict[int, tuple[StepExecutor, float | None]]):
        self.root = root
        self.entries = entries


def _check_options(
    tracing: object,
    metrics: object,
    logging: object,
    decorators: tuple[object, ...],
    hooks: tuple[object, ...],
) -> None:
    """Reject option values of the wrong type (``tracing="off"`` would mean on)."""
    for name, value, config in (
        ("tracing", tracing, TracingConfig),
        ("metrics", metrics, MetricsConfig),
        ("logging", logging, None),
    ):
        if isinstance(value, bool) or (config is not None and isinstance(value, config)):
            continue
        also = f" or a {config.__name__}" if config is not None else ""
        raise ValidationError(
            f"FlowExecutor.{name} must be True, False{also}; got {value!r}",
            field=name,
            value=value,
        )
    checks: tuple[tuple[str, tuple[object, ...], Callable[[object], bool], str], ...] = (
        ("decorators", decorators, callable, "a callable executor decorator"),
        ("hooks", hooks, _is_hook, "a StepHook (with a step_finished(outcome, ctx) method)"),
    )
    for name, items, check, what in checks:
        for i, item in enumerate(items):
            if not check(item):
                raise ValidationError(
                    f"FlowExecutor.{name}[{i}] must be {what}; got {item!r}",
                    field=f"{name}[{i}]",
                    value=item,
                )


def _items(name: str, items: Any) -> tuple[Any, ...]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ValidationError(
            f"FlowExecutor.{name} must be a list; got {items!r}", field=name, value=items
        )
    return tuple(items)


def _is_hook(value: object) -> bool:
    return callable(getattr(value, "step_finished", None))


def _default_executors() -> dict[str, StepExecutor]:
    from .executors import default_executors

    return default_executors()


class FlowExecutor:
    """Runs flows: holds the handlers, the executor registry and the defaults.

    Args:
        handlers: method name → callable ``handler(params)``, async or sync (sync ones run
            in worker threads, abandoned at their deadline).
        timeouts: executor-level per-type timeouts (a :class:`TimeoutOptions` or one
            number used as the default); below the flow's options in the resolution order.
        decorators: extra :class:`ExecutorDecorator` s wrapped around every executor,
            built-in and user-registered alike (inside the telemetry decorators).
        hooks: :class:`StepHook` s told about every outcome.
        tracing: ``False`` switches spans off; a :class:`~stepwatch.telemetry.TracingConfig`
            sets options.
        tracer_provider: OpenTelemetry ``TracerProvider``; the global one if ``None``.
        metrics: ``False`` switches metrics off; a
            :class:`~stepwatch.telemetry.MetricsConfig` sets options.
        registry: prometheus-client ``CollectorRegistry``; the default one if ``None``.
        logging: ``False`` switches the structlog events off.
        max_threads: at most this many sync handlers run at once in worker threads; a
            thread abandoned at its deadline keeps its place until its function returns
            (see :class:`WorkerTracker`).

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
        tracing: bool | TracingConfig = True,
        tracer_provider: TracerProvider | None = None,
        metrics: bool | MetricsConfig = True,
        registry: CollectorRegistry | None = None,
        logging: bool = True,
        max_threads: int = DEFAULT_MAX_THREADS,
    ) -> None:
        decorators = _items("decorators", decorators)
        hooks = _items("hooks", hooks)
        _check_options(tracing, metrics, logging, decorators, hooks)
        handlers = {} if handlers is None else handlers
        if not isinstance(handlers, Mapping):
            raise ValidationError(
                f"FlowExecutor.handlers must be a mapping of method name to callable; "
                f"got {handlers!r}",
                field="handlers",
                value=handlers,
            )
        self._handlers: dict[str, Invoker] = {}
        self._plans: weakref.WeakKeyDictionary[Flow, _Plan] = weakref.WeakKeyDictionary()
        for method, handler in handlers.items():
            self.add_handler(method, handler)
        self.timeouts = coerce_options("FlowExecutor.timeouts", timeouts)
        self._decorators: list[ExecutorDecorator] = list(decorators)
        self._hooks: tuple[StepHook, ...] = tuple(hooks)
        self._executors: dict[str, StepExecutor] = _default_executors()
        self._chains: dict[str, StepExecutor] = {}
        self._workers = WorkerTracker(max_threads)
        self._telemetry: list[ExecutorDecorator] = build_decorators(
            workers=self._workers,
            tracing=tracing,
            tracer_provider=tracer_provider,
            metrics=metrics,
            registry=registry,
            logging=logging,
        )

    # -- configuration -------------------------------------------------------------------
    def add_handler(self, method: str, handler: Callable[[Any], Any]) -> None:
        """Register (or replace) the handler for ``method``."""
        if not isinstance(method, str) or not method:
            raise ValidationError(
                f"handler names must be non-empty strings; got {method!r}",
                field="handlers",
                value=method,
            )
        if not callable(handler):
            raise ValidationError(
                f"handler {method!r} must be callable; got {handler!r}",
                field=f"handlers[{method!r}]",
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
        name = step_type if isinstance(step_type, str) else step_type.type
        if not isinstance(executor, StepExecutor):
            raise ValidationError(
                f"executor for step type {name!r} must have can_execute(step) and async "
                f"execute(step, ctx); got {executor!r}",
                field="executor",
                value=executor,
            )
        if name in self._executors and not replace:
            raise ValidationError(
                f"an executor for step type {name!r} is already registered; pass "
                "replace=True to replace it",
                field="step_type",
                value=name,
            )
        self._executors[name] = executor
        self._chains.pop(name, None)
        self._plans.clear()

    def add_decorator(self, decorator: ExecutorDecorator) -> None:
        """Wrap every executor (present and future) in ``decorator``."""
        self._decorators.append(decorator)
        self._chains.clear()
        self._plans.clear()

    @property
    def workers(self) -> WorkerTracker:
        """Counts of worker threads abandoned at a deadline (see :class:`WorkerTracker`)."""
        return self._workers

    def _all_decorators(self) -> list[ExecutorDecorator]:
        return [*self._decorators, *self._telemetry]

    def _chain(self, step_type: str) -> StepExecutor:
        chain = self._chains.get(step_type)
        if chain is None:
            if step_type == "flow":
                from .executors.sequence import FlowRootExecutor

                raw: StepExecutor = FlowRootExecutor()
            else:
                raw = self._executors[step_type]
            chain = DeadlineGuard(raw)
            for decorator in self._all_decorators():
                chain = decorator(chain)
            self._chains[step_type] = chain
        return chain

    # -- planning ----------------------------------------------------------------------------
    def _plan(self, flow: Flow) -> _Plan:
        plan = self._plans.get(flow)
        if plan is None:
            plan = self._make_plan(flow)
            self._plans[flow] = plan
        return plan

    def _make_plan(self, flow: Flow) -> _Plan:
        if not isinstance(flow, Flow):
            raise ValidationError(
                f"run() needs a stepwatch.Flow; got {flow!r} ({type(flow).__name__})",
                field="flow",
                value=flow,
            )
        root = FlowStep(flow.name, flow.steps, timeout=flow.timeout)
        entries: dict[int, tuple[StepExecutor, float | None]] = {
            id(root): (self._chain("flow"), flow.timeout)
        }
        for step in flow.walk():
            entries[id(step)] = (self._entry(step, flow), self._timeout(step, flow))
        return _Plan(root, entries)

    def _timeout(self, step: Step, flow: Flow) -> float | None:
        return resolve_timeout(step.type, step.timeout_seconds, flow.timeouts, self.timeouts)

    def _entry(self, step: Step, flow: Flow) -> StepExecutor:
        raw = self._executors.get(step.type)
        where = f"Flow({flow.name!r}) step {type(step).__name__}({step.name!r})"
        if raw is None:
            raise ValidationError(
                f"{where}: no executor is registered for step type {step.type!r} (known: "
                f"{', '.join(sorted(self._executors))}); use FlowExecutor.register()",
                field="step_type",
                value=step.type,
            )
        if not raw.can_execute(step):
            raise ValidationError(
                f"{where}: the executor registered for {step.type!r} ({raw!r}) cannot execute it",
                field="step_type",
                value=step.type,
            )
        if isinstance(step, Request) and step.method not in self._handlers:
            close = difflib.get_close_matches(step.method, self._handlers, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            known = ", ".join(map(repr, sorted(self._handlers))) or "none"
            raise ValidationError(
                f"{where}: no handler registered for method {step.method!r} (known: {known}){hint}",
                field=f"{step.name}.method",
                value=step.method,
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

        Raises:
            ValidationError: the flow does not fit this executor (checked before anything
                runs).
            StepTimeoutError: a step's own deadline expired (and it had no fallback).
            FlowTimeoutError: the whole-flow deadline expired.
            StepFailedError: a step raised.

        Every error carries ``.result`` with what was computed before it. Cancellation from
        outside propagates unchanged (never reported as a timeout).
        """
        plan = self._plan(flow)
        run = RunState(self, flow, plan, input, run_id or uuid.uuid4().hex)
        caller = StepContext(
            run,
            None,
            None,
            timeout=None,
            started=run.started,
            deadline=current_effective_deadline(),
            own_deadline=math.inf,
            scoped=False,
        )
        outcome = await self._run_step(plan.root, caller, None)
        # a cancel point at the end too: a handler that swallowed the caller's cancel
        # must not turn it into a normal return
        await checkpoint_if_cancelled()
        result = self._result(run, outcome)
        if outcome.error is not None and not outcome.recovered:
            error = outcome.error
            if isinstance(error, StepwatchError):
                error.result = result
            raise error
        return result

    @staticmethod
    def _result(run: RunState, outcome: Outcome) -> RunResult:
        values = run.values
        last = run.flow.steps[-1].name
        return RunResult(
            flow_name=run.flow.name,
            run_id=run.run_id,
            values=values,
            outcomes=run.outcomes,
            elapsed=outcome.elapsed,
            output=values.get(last),
            input=run.input,
        )

    async def _run_step(self, step: Step, parent: StepContext, index: int | None) -> Outcome:
        """Run one step under ``parent``: the single path every step takes."""
        run = parent._run
        entry = run.plan.entries.get(id(step))
        if entry is None:  # a step built at run time by a custom executor
            entry = (self._entry(step, run.flow), self._timeout(step, run.flow))
        chain, timeout = entry
        now = await enter(parent)  # a checkpoint: the step may never start
        own = now + timeout if timeout is not None else math.inf
        parent_deadline = parent.deadline
        scoped = own < parent_deadline
        ctx = StepContext(
            run,
            parent,
            step,
            timeout=timeout,
            started=now,
            deadline=own if scoped else parent_deadline,
            own_deadline=own,
            scoped=scoped,
            index=index,
        )
        try:
            value = await chain.execute(step, ctx)
        except anyio.get_cancelled_exc_class():
            end = current_time()
            if ctx.scoped and end >= ctx.own_deadline:
                cause = CancelCause.DEADLINE
            else:
                cause = parent.cancel_cause()
            late = ctx.late
            self._record(
                ctx,
                Outcome(
                    step.name,
                    step.type,
                    Status.CANCELLED,
                    value=late if not isinstance(late, BaseException) else None,
                    error=late if isinstance(late, BaseException) else None,
                    elapsed=end - now,
                    attempts=ctx.attempt,
                    cause=cause,
                    timeout=timeout,
                    overrun=ctx.overrun,
                ),
            )
            raise
        except Exception as exc:
            status = Status.TIMED_OUT if ctx.status is Status.TIMED_OUT else Status.FAILED
            error: Exception = exc
            if not isinstance(exc, StepwatchError):
                error = StepFailedError(
                    f"{step.type} step {step.name!r} failed: {type(exc).__name__}: {exc}",
                    step_name=step.name,
                    step_type=step.type,
                    errors=(exc,),
                    attempts=ctx.attempt,
                    elapsed=current_time() - now,
                    retryable=_retryable(step, exc),
                )
                error.__cause__ = exc
            return self._record(
                ctx,
                Outcome(
                    step.name,
                    step.type,
                    status,
                    value=ctx.late if status is Status.TIMED_OUT else None,
                    error=error,
                    elapsed=current_time() - now,
                    attempts=ctx.attempt,
                    timeout=timeout,
                    overrun=ctx.overrun,
                ),
            )
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: recorded, then raised
            self._record(
                ctx,
                Outcome(
                    step.name,
                    step.type,
                    Status.FAILED,
                    error=exc,
                    elapsed=current_time() - now,
                    attempts=ctx.attempt,
                    timeout=timeout,
                ),
            )
            raise
        status = ctx.status or Status.SUCCEEDED
        recovered = status is not Status.SUCCEEDED
        outcome = Outcome(
            step.name,
            step.type,
            status,
            value=value,
            error=ctx.error,
            elapsed=current_time() - now,
            attempts=ctx.attempt,
            timeout=timeout,
            recovered=recovered,
            overrun=ctx.overrun,
        )
        if parent.step is not None:
            run.values[step.name] = value
        return self._record(ctx, outcome)

    def _record(self, ctx: StepContext, outcome: Outcome) -> Outcome:
        parent = ctx.parent
        if parent is not None and parent.step is not None:
            ctx._run.outcomes[outcome.name] = outcome
            if ctx.index is not None and parent.progress is not None:
                parent.progress.record(ctx.index, outcome)
        if self._hooks:
            self._notify(outcome, ctx)
        return outcome

    def _record_extra(self, ctx: StepContext, outcome: Outcome) -> None:
        """Record an outcome made by a composite for a child (unstarted, replaced)."""
        ctx._run.outcomes[outcome.name] = outcome
        if self._hooks:
            self._notify(outcome, ctx)

    def _notify(self, outcome: Outcome, ctx: StepContext) -> None:
        for hook in self._hooks:
            try:
                hook.step_finished(outcome, ctx)
            except Exception:  # a hook never breaks a flow
                continue
