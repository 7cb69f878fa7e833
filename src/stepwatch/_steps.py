"""Immutable step definitions and the :class:`Flow` that holds them.

Every step is a frozen dataclass with slots. Values are validated when the step is
created; a :class:`Flow` checks that step names are unique across the whole tree.
"""

from __future__ import annotations

import math
from collections import abc
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from ._errors import ValidationError
from ._retry import Retry, coerce_retry
from ._text import encodable
from ._timeouts import TimeoutOptions, TimeoutValue, as_float, coerce_options, validate_timeout

if TYPE_CHECKING:
    from ._context import StepContext

__all__ = [
    "DEFAULT_MAX_ITERATIONS",
    "FLOW_TYPE",
    "MAX_DEPTH",
    "NO_FALLBACK",
    "Branch",
    "Delay",
    "Flow",
    "Loop",
    "Parallel",
    "Request",
    "Sequence",
    "Step",
    "Transform",
]


class _NoFallback:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_FALLBACK"

    def __reduce__(self) -> str:
        return "NO_FALLBACK"


NO_FALLBACK: Final[Any] = _NoFallback()

FLOW_TYPE: Final = "flow"
"""The step type of a run's root step (the flow itself): in span names, metric labels
and outcomes."""

MAX_DEPTH: Final = 64
"""How deeply steps may nest in a flow (a top-level step is at depth 1). Each level of
nesting costs Python stack frames; deeper trees are rejected when the :class:`Flow` is made
instead of failing with a ``RecursionError`` inside ``run()``."""

DEFAULT_MAX_ITERATIONS: Final = 10_000
"""``Loop.max_iterations`` when a loop driven by a condition does not set it."""
"""Sentinel: the step has no fallback value (``None`` is a valid fallback)."""

StepFn = Callable[["StepContext"], Any] | Callable[["StepContext"], Awaitable[Any]]
FallbackOn = Literal["timeout", "failure"]
"""What a step's ``fallback`` covers: its own timeout, its failure."""
_FALLBACK_ON: Final[tuple[FallbackOn, ...]] = ("timeout", "failure")


def _check_name(owner: str, name: object) -> None:
    """Validate the ``name`` of a step or flow (``owner``: its class name): a non-empty
    string that telemetry can export (see :func:`encodable`)."""
    if not isinstance(name, str) or not name:
        raise ValidationError(
            f"{owner}.name must be a non-empty string; got {name!r}",
            field=f"{owner}.name",
            value=name,
        )
    if not encodable(name):
        raise ValidationError(
            f"{owner}.name must be encodable as UTF-8 (telemetry exports names as UTF-8 "
            f"text); got {name!r}, which holds a surrogate code point",
            field=f"{owner}.name",
            value=name,
        )


def _describe(step: object) -> str:
    name = getattr(step, "name", "?")
    return f"{type(step).__name__}({name!r})"


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Step:
    """Base of all step definitions.

    Subclass it (as a frozen dataclass with slots; ``eq=False`` keeps identity hashing like
    the built-in steps) to define your own step type, set the ``type`` class variable, and
    register an executor for it with :meth:`FlowExecutor.register`. Steps compare and hash
    by identity: each definition is its own step.

    Args:
        name: unique within the flow.
        timeout: this step's own budget (seconds, ``timedelta``, ``math.inf``, or ``None``
            to inherit through the resolution order).
        retry: a :class:`Retry`, an int number of attempts, or ``None``.
        fallback: value used when this step times out (outcome ``fallback``).
        fallback_on: when the fallback is used: ``"timeout"`` (the default: the step's own
            deadline expired), ``"failure"`` (it raised, after its retries), or both,
            ``("timeout", "failure")``. Needs a ``fallback``.
    """

    type: ClassVar[str] = "step"
    #: the last level of the timeout resolution order for this step type (``None`` =
    #: bounded only by its children and parents)
    default_timeout: ClassVar[float | None] = None
    #: the step runs its children concurrently (telemetry gives its children an index
    #: and counts them by status)
    concurrent: ClassVar[bool] = False
    #: the step runs its child repeatedly (telemetry gives the child its iteration)
    repeats: ClassVar[bool] = False

    name: str
    _: KW_ONLY
    timeout: TimeoutValue = None
    retry: Retry | int | None = None
    fallback: Any = NO_FALLBACK
    fallback_on: FallbackOn | abc.Iterable[FallbackOn] | None = None

    def __post_init__(self) -> None:
        _check_name(type(self).__name__, self.name)
        object.__setattr__(
            self,
            "timeout",
            validate_timeout(
                f"{self.name}.timeout", self.timeout, where=f"{_describe(self)}.timeout"
            ),
        )
        object.__setattr__(
            self, "retry", coerce_retry(f"{self.name}.retry", _describe(self), self.retry)
        )
        object.__setattr__(self, "fallback_on", _fallback_on(self))

    def children(self) -> tuple[Step, ...]:
        """The steps this step runs (composite steps override this)."""
        return ()

    def handlers(self) -> tuple[str, ...]:
        """Names of the handlers this step calls (checked when the flow is planned)."""
        return ()

    def trace_mode(self) -> Literal["nested", "detached"] | None:
        """How this step's children are traced, if the step decides (``None``: the
        executor's default)."""
        return None

    @property
    def retry_policy(self) -> Retry | None:
        """The validated ``retry`` as a :class:`Retry` (or ``None``)."""
        return self.retry  # type: ignore[return-value]  # normalised in __post_init__

    @property
    def timeout_seconds(self) -> float | None:
        """The validated ``timeout`` in seconds (``inf`` = explicitly unlimited)."""
        return self.timeout  # type: ignore[return-value]  # normalised in __post_init__

    @property
    def fallback_triggers(self) -> tuple[FallbackOn, ...]:
        """The validated ``fallback_on``: ``("timeout",)``, ``("failure",)`` or both."""
        return self.fallback_on  # type: ignore[return-value]  # normalised in __post_init__


def _fallback_on(step: Step) -> tuple[FallbackOn, ...]:
    """``fallback_on`` as a tuple in canonical order; ``None`` is ``("timeout",)``."""
    value: object = step.fallback_on
    if value is None:
        return ("timeout",)
    where = f"{_describe(step)}.fallback_on"
    items: tuple[object, ...]
    if isinstance(value, str):
        items = (value,)
    elif isinstance(value, abc.Iterable) and not isinstance(value, bytes | abc.Mapping):
        items = tuple(value)
    else:
        items = ()
    if not items or any(item not in _FALLBACK_ON for item in items):
        raise ValidationError(
            f"{where} must be 'timeout', 'failure' or both, as ('timeout', 'failure'); "
            f"got {value!r}",
            field=f"{step.name}.fallback_on",
            value=value,
        )
    if step.fallback is NO_FALLBACK:
        raise ValidationError(
            f"{where}={value!r} needs a fallback value (fallback=...)",
            field=f"{step.name}.fallback_on",
            value=value,
        )
    return tuple(kind for kind in _FALLBACK_ON if kind in items)


def _check_callable(step: Step, field_name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise ValidationError(
            f"{_describe(step)}.{field_name} must be callable; got {value!r} "
            f"({type(value).__name__})",
            field=f"{step.name}.{field_name}",
            value=value,
        )


def _prefix(owner: Step | str) -> str:
    """The ValidationError.field prefix: a step's name, or the class (``Flow``)."""
    return owner.name if isinstance(owner, Step) else owner.split("(", 1)[0]


def _check_step(owner: Step | str, field_name: str, value: object) -> Step:
    if not isinstance(value, Step):
        where = owner if isinstance(owner, str) else _describe(owner)
        raise ValidationError(
            f"{where}.{field_name} must be a stepwatch Step (Request, Transform, Parallel, "
            f"...); got {value!r} ({type(value).__name__})",
            field=f"{_prefix(owner)}.{field_name}",
            value=value,
        )
    return value


def _steps_tuple(owner: Step | str, field_name: str, value: object) -> tuple[Step, ...]:
    if isinstance(value, Step):
        return (value,)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        where = owner if isinstance(owner, str) else _describe(owner)
        raise ValidationError(
            f"{where}.{field_name} must be a step or a list of steps; got {value!r}",
            field=f"{_prefix(owner)}.{field_name}",
            value=value,
        )
    steps = tuple(value)
    for i, item in enumerate(steps):
        _check_step(owner, f"{field_name}[{i}]", item)
    return steps


def _check_unique(
    owner: str, field: str, steps: Iterable[Step], *, depth_limit: int = 0
) -> frozenset[str]:
    seen: dict[str, Step] = {}
    stack = [(step, 1) for step in reversed(tuple(steps))]
    order: list[Step] = []
    while stack:
        step, depth = stack.pop()
        if depth_limit and depth > depth_limit:
            raise ValidationError(
                f"{owner}: step {_describe(step)} is nested {depth} levels deep; at most "
                f"{depth_limit} levels are supported (stepwatch.MAX_DEPTH)",
                field=field,
                value=step.name,
            )
        order.append(step)
        children = tuple(step.children())
        for child in children:
            if not isinstance(child, Step):
                raise ValidationError(
                    f"{owner}: {_describe(step)}.children() holds {child!r}, which is not a "
                    "stepwatch step",
                    field=field,
                    value=child,
                )
        stack.extend((child, depth + 1) for child in reversed(children))
    for step in order:
        other = seen.get(step.name)
        if other is not None and other is not step:
            raise ValidationError(
                f"{owner}: duplicate step name {step.name!r} ({_describe(other)} and "
                f"{_describe(step)}); step names must be unique within a flow",
                field=field,
                value=step.name,
            )
        if other is step:
            raise ValidationError(
                f"{owner}: the step {_describe(step)} appears twice; step names must be "
                "unique within a flow (define a second step with its own name)",
                field=field,
                value=step.name,
            )
        seen[step.name] = step
    return frozenset(seen)


@dataclass(frozen=True, slots=True, eq=False)
class Request(Step):
    """Call the handler registered under ``method`` with ``params``.

    Args:
        name: unique within the flow.
        method: key of the handler in ``FlowExecutor(handlers=...)``.
        params: passed to the handler; if callable, called with the :class:`StepContext`
            (flow input, results of earlier steps) to compute them.
    """

    type: ClassVar[str] = "request"
    default_timeout: ClassVar[float | None] = 30.0

    method: str
    params: Any = None

    def __post_init__(self) -> None:
        Step.__post_init__(self)
        if not isinstance(self.method, str) or not self.method:
            raise ValidationError(
                f"{_describe(self)}.method must be a non-empty handler name; got {self.method!r}",
                field=f"{self.name}.method",
                value=self.method,
            )

    def handlers(self) -> tuple[str, ...]:
        return (self.method,)


@dataclass(frozen=True, slots=True, eq=False)
class Transform(Step):
    """Compute a value with ``fn(ctx)`` (sync or async).

    A sync ``fn`` runs in a worker thread so the deadline holds even if it blocks; pass
    ``inline=True`` for fast, non-blocking functions to skip the thread.
    """

    type: ClassVar[str] = "transform"
    default_timeout: ClassVar[float | None] = 10.0

    fn: StepFn
    _: KW_ONLY
    inline: bool = False

    def __post_init__(self) -> None:
        Step.__post_init__(self)
        _check_callable(self, "fn", self.fn)
        if not isinstance(self.inline, bool):
            raise ValidationError(
                f"{_describe(self)}.inline must be True or False; got {self.inline!r}",
                field=f"{self.name}.inline",
                value=self.inline,
            )


@dataclass(frozen=True, slots=True, eq=False)
class Branch(Step):
    """Run ``then`` if ``condition(ctx)`` is true, else ``otherwise`` (if given).

    ``condition`` may be sync or async; a sync one runs inline and must not block. The
    branch's value is the chosen step's value (``None`` when nothing ran).
    """

    type: ClassVar[str] = "branch"
    default_timeout: ClassVar[float | None] = 5.0

    condition: StepFn
    then: Step
    otherwise: Step | None = None

    def __post_init__(self) -> None:
        Step.__post_init__(self)
        _check_callable(self, "condition", self.condition)
        _check_step(self, "then", self.then)
        if self.otherwise is not None:
            _check_step(self, "otherwise", self.otherwise)

    def children(self) -> tuple[Step, ...]:
        return (self.then,) if self.otherwise is None else (self.then, self.otherwise)


@dataclass(frozen=True, slots=True, eq=False)
class Loop(Step):
    """Run ``body`` repeatedly; the value is the list of the body's values.

    Stops after ``times`` iterations, or when ``condition(ctx)`` (checked before each
    iteration, sync or async; ``ctx.iteration`` is the 0-based iteration about to run)
    returns false. ``max_iterations`` is a safety cap for loops driven by a condition
    (10 000 unless given); ``times`` is never capped, and ``times`` above an explicit
    ``max_iterations`` is rejected. See :attr:`iteration_limit`.
    """

    type: ClassVar[str] = "loop"
    default_timeout: ClassVar[float | None] = 60.0
    repeats: ClassVar[bool] = True

    body: Step
    _: KW_ONLY
    times: int | None = None
    condition: StepFn | None = None
    max_iterations: int | None = None

    def __post_init__(self) -> None:
        Step.__post_init__(self)
        _check_step(self, "body", self.body)
        _check_callable(self, "condition", self.condition, optional=True)
        for name in ("times", "max_iterations"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(
                    f"{_describe(self)}.{name} must be an int >= 0; got {value!r}",
                    field=f"{self.name}.{name}",
                    value=value,
                )
        if self.times is None and self.condition is None:
            raise ValidationError(
                f"{_describe(self)} needs times= or condition= (or both)",
                field=f"{self.name}.times",
                value=None,
            )
        if (
            self.times is not None
            and self.max_iterations is not None
            and self.times > self.max_iterations
        ):
            raise ValidationError(
                f"{_describe(self)}: times={self.times} exceeds "
                f"max_iterations={self.max_iterations}",
                field=f"{self.name}.max_iterations",
                value=self.max_iterations,
            )

    @property
    def iteration_limit(self) -> int:
        """The most iterations this loop runs: ``times`` if given, else ``max_iterations``
        (10 000 when not given)."""
        if self.times is not None:
            return self.times
        return DEFAULT_MAX_ITERATIONS if self.max_iterations is None else self.max_iterations

    def children(self) -> tuple[Step, ...]:
        return (self.body,)


@dataclass(frozen=True, slots=True, eq=False)
class Sequence(Step):
    """Run ``steps`` one after another; the value is a dict name → value, in order."""

    type: ClassVar[str] = "sequence"

    steps: abc.Sequence[Step]

    def __post_init__(self) -> None:
        Step.__post_init__(self)
        object.__setattr__(self, "steps", _steps_tuple(self, "steps", self.steps))
        _check_unique(_describe(self), f"{self.name}.steps", self.steps)

    def children(self) -> tuple[Step, ...]:
        return self.steps  # type: ignore[return-value]  # a tuple since __post_init__


OnTimeout = Literal["raise", "partial"]
OnFailure = Literal["raise", "partial"]
TraceChildren = Literal["nested", "detached"]


@dataclass(frozen=True, slots=True, eq=False)
class Parallel(Step):
    """Run ``steps`` concurrently under one group deadline (see ``docs/design.md``).

    Args:
        steps: the children.
        on_timeout: when the group's deadline expires, ``"raise"`` a
            :class:`StepTimeoutError` carrying ``partial`` and ``pending``, or return the
            ``"partial"`` results.
        on_failure: when children fail or time out on their own deadlines, ``"raise"``
            (the default), or return the ``"partial"`` results: whatever succeeded,
            possibly nothing (``Promise.allSettled``, ``gather(return_exceptions=True)``).
            The failed children keep their outcomes; the step's outcome is ``succeeded``
            with ``recovered=True`` and ``error`` saying which children failed.
        fail_fast: a child failure cancels the siblings and raises at once. ``None`` (the
            default) means ``True``, or ``False`` with ``on_failure="partial"``, which
            contradicts ``fail_fast=True``.
        max_concurrency: at most this many children run at once.
        min_successes: return as soon as this many children succeeded; cancel the rest.
            When that can no longer happen the step fails, whatever ``on_failure`` says.
        trace_children: ``"nested"`` child spans, or ``"detached"`` (one trace per child,
            linked to the parallel span); ``None`` = the executor's default.
    """

    type: ClassVar[str] = "parallel"
    concurrent: ClassVar[bool] = True

    steps: abc.Sequence[Step]
    _: KW_ONLY
    on_timeout: OnTimeout = "raise"
    on_failure: OnFailure = "raise"
    fail_fast: bool | None = None
    max_concurrency: int | None = None
    min_successes: int | None = None
    trace_children: TraceChildren | None = None

    def __post_init__(self) -> None:
        Step.__post_init__(self)
        steps = _steps_tuple(self, "steps", self.steps)
        object.__setattr__(self, "steps", steps)
        _check_unique(_describe(self), f"{self.name}.steps", steps)
        for option in ("on_timeout", "on_failure"):
            chosen = getattr(self, option)
            if chosen not in ("raise", "partial"):
                raise ValidationError(
                    f"{_describe(self)}.{option} must be 'raise' or 'partial'; got {chosen!r}",
                    field=f"{self.name}.{option}",
                    value=chosen,
                )
        degrade = self.on_failure == "partial"
        if self.fail_fast is None:
            object.__setattr__(self, "fail_fast", not degrade)
        elif not isinstance(self.fail_fast, bool):
            raise ValidationError(
                f"{_describe(self)}.fail_fast must be a bool or None; got {self.fail_fast!r}",
                field=f"{self.name}.fail_fast",
                value=self.fail_fast,
            )
        elif self.fail_fast and degrade:
            raise ValidationError(
                f"{_describe(self)}: fail_fast=True contradicts on_failure='partial' (a "
                "failure cannot both stop the group and be tolerated); leave fail_fast unset",
                field=f"{self.name}.fail_fast",
                value=self.fail_fast,
            )
        for name in ("max_concurrency", "min_successes"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(
                    f"{_describe(self)}.{name} must be an int >= 1 or None; got {value!r}",
                    field=f"{self.name}.{name}",
                    value=value,
                )
        if self.min_successes is not None and self.min_successes > len(steps):
            raise ValidationError(
                f"{_describe(self)}.min_successes={self.min_successes} exceeds its "
                f"{len(steps)} children",
                field=f"{self.name}.min_successes",
                value=self.min_successes,
            )
        if self.trace_children not in (None, "nested", "detached"):
            raise ValidationError(
                f"{_describe(self)}.trace_children must be 'nested', 'detached' or None; "
                f"got {self.trace_children!r}",
                field=f"{self.name}.trace_children",
                value=self.trace_children,
            )

    def children(self) -> tuple[Step, ...]:
        return self.steps  # type: ignore[return-value]  # a tuple since __post_init__

    def trace_mode(self) -> Literal["nested", "detached"] | None:
        return self.trace_children


@dataclass(frozen=True, slots=True, eq=False)
class Delay(Step):
    """Sleep for ``seconds`` (useful in demos, tests and pacing); the value is ``None``."""

    type: ClassVar[str] = "delay"

    seconds: float

    def __post_init__(self) -> None:
        Step.__post_init__(self)
        value = self.seconds
        if isinstance(value, int) and not isinstance(value, bool):
            value = as_float(f"{self.name}.seconds", value, where=f"{_describe(self)}.seconds")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or math.isnan(value)
            or value < 0
        ):
            raise ValidationError(
                f"{_describe(self)}.seconds must be a number >= 0; got {value!r}",
                field=f"{self.name}.seconds",
                value=value,
            )


@dataclass(frozen=True, slots=True, eq=False)
class _FlowStep(Step):
    """The root of a run: the flow's steps in order under the whole-flow deadline."""

    type: ClassVar[str] = FLOW_TYPE

    steps: tuple[Step, ...]

    def children(self) -> tuple[Step, ...]:
        return self.steps


@dataclass(frozen=True, slots=True, weakref_slot=True, init=False, eq=False)
class Flow:
    """A named flow of steps, run in order by :meth:`FlowExecutor.run`.

    Args:
        name: the flow's name (used in telemetry).
        steps: one step or a list of steps, run one after another.
        timeouts: per-type defaults for this flow: a :class:`TimeoutOptions` or one number
            used as the flow's default.
        timeout: a whole-flow deadline; never used as a per-step default.

    Raises:
        ValidationError: bad values, a non-step, or a duplicate step name anywhere in the tree.
    """

    name: str
    steps: tuple[Step, ...]
    timeouts: TimeoutOptions | None
    timeout: float | None
    step_names: frozenset[str]

    def __init__(
        self,
        name: str,
        steps: Step | abc.Iterable[Step],
        *,
        timeouts: TimeoutOptions | TimeoutValue = None,
        timeout: TimeoutValue = None,
    ) -> None:
        _check_name("Flow", name)
        where = f"Flow({name!r})"
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "steps", _steps_tuple(where, "steps", steps))
        if not self.steps:
            raise ValidationError(f"{where} has no steps", field="Flow.steps", value=steps)
        object.__setattr__(
            self, "timeouts", coerce_options("Flow.timeouts", timeouts, where=f"{where}.timeouts")
        )
        object.__setattr__(
            self, "timeout", validate_timeout("Flow.timeout", timeout, where=f"{where}.timeout")
        )
        object.__setattr__(
            self,
            "step_names",
            _check_unique(where, "Flow.steps", self.steps, depth_limit=MAX_DEPTH),
        )

    def walk(self) -> abc.Iterator[Step]:
        """Every step of the tree, depth first, in declaration order."""
        stack = list(reversed(self.steps))
        while stack:
            step = stack.pop()
            yield step
            stack.extend(reversed(step.children()))
