"""The stepwatch exception tree.

::

    StepwatchError                     base of everything stepwatch raises; has .code, .retryable
    ├── ValidationError(ValueError)    a definition or argument is wrong (code VALIDATION);
    │                                  raised at definition time, or at run() start for what
    │                                  only the executor can check (handlers, step types)
    ├── StepFailedError                a step raised (code STEP_FAILED); the original exception
    │                                  is __cause__; for a parallel step with SEVERAL failed
    │                                  children __cause__ is an ExceptionGroup of every child
    │                                  error (a single failed child's error passes unchanged)
    ├── WorkersExhaustedError          every worker thread is held by a call abandoned at its
    │                                  deadline: a sync handler cannot start (code
    │                                  WORKERS_EXHAUSTED, retryable)
    └── DeadlineExceededError(TimeoutError)
        │                              a deadline expired (code TIMEOUT, retryable): .timeout,
        │                              .elapsed, .partial, .pending, .outcomes, and .overrun
        │                              when the step ended late instead of stopping
        ├── StepTimeoutError           a step's own deadline expired
        └── FlowTimeoutError           the whole-flow deadline expired

Cancellation that comes from outside the run (the caller's cancel scope, shutdown) is never
turned into one of these: the backend's native cancellation exception propagates unchanged.

Every error raised out of ``FlowExecutor.run()`` carries ``.result``: a :class:`RunResult`
with every value computed before the failure and every outcome, so nothing is lost.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._outcome import Outcome
    from ._result import RunResult

__all__ = [
    "DeadlineExceededError",
    "ErrorCode",
    "FlowTimeoutError",
    "StepFailedError",
    "StepTimeoutError",
    "StepwatchError",
    "ValidationError",
    "WorkersExhaustedError",
]


class ErrorCode(enum.StrEnum):
    """Machine-readable category of a :class:`StepwatchError`."""

    VALIDATION = "validation"
    STEP_FAILED = "step_failed"
    TIMEOUT = "timeout"
    WORKERS_EXHAUSTED = "workers_exhausted"


class StepwatchError(Exception):
    """Base class of every error stepwatch raises.

    Attributes:
        code: the :class:`ErrorCode` of this error.
        retryable: whether trying the same thing again may succeed.
        step_name: name of the step the error is about, if any.
        step_type: type of that step (``"request"``, ``"parallel"``, ...), if any.
        result: the run's :class:`RunResult` (every value computed before the error and
            every outcome) once the error left ``run()``; ``None`` for an error raised
            before anything ran. The errors a run raises (:class:`StepFailedError`,
            :class:`DeadlineExceededError`, :class:`WorkersExhaustedError`) type it as
            non-optional.
    """

    code: ErrorCode = ErrorCode.STEP_FAILED
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        step_name: str | None = None,
        step_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step_name = step_name
        self.step_type = step_type
        self._result: RunResult | None = None

    def __str__(self) -> str:
        return self.message

    @property
    def result(self) -> RunResult | None:
        """The run's :class:`RunResult` once the error left ``run()`` (else ``None``)."""
        return self._result

    @result.setter
    def result(self, value: RunResult | None) -> None:
        self._result = value


def left_a_run(error: StepwatchError) -> bool:
    """Whether ``error`` has already come out of a ``FlowExecutor.run()`` (it has its
    ``result``): raised by a handler that ran a sub-flow, it is that handler's failure, not
    an error of the run it is now in."""
    return error._result is not None


class _RunError(StepwatchError):
    """An error a run raises: its ``result`` is always set when it leaves ``run()``."""

    @property
    def result(self) -> RunResult:
        """The run's :class:`RunResult`: every value computed before the error and every
        outcome.

        Raises:
            AttributeError: the error did not come out of ``FlowExecutor.run()`` (one made
                by hand, or read inside a step before the run ended).
        """
        found = self._result
        if found is None:
            raise AttributeError(
                f"{type(self).__name__}.result is set when the error leaves "
                "FlowExecutor.run(); this one has not"
            )
        return found

    @result.setter
    def result(self, value: RunResult | None) -> None:
        self._result = value


class ValidationError(StepwatchError, ValueError):
    """A definition or an argument is invalid; the message names the field and the value."""

    code = ErrorCode.VALIDATION
    retryable = False

    def __init__(self, message: str, *, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class StepFailedError(_RunError):
    """A step raised an exception (its ``__cause__``), or children of a parallel step failed.

    Attributes:
        errors: the underlying exceptions (one for a leaf step, one per failed child for a
            parallel step).
        partial: values of the children that finished, by name, in declaration order
            (composite steps only; empty otherwise).
        outcomes: the children's outcomes (composite steps only).
        attempts: how many attempts the step made.
        elapsed: seconds the step ran.
    """

    code = ErrorCode.STEP_FAILED

    def __init__(
        self,
        message: str,
        *,
        step_name: str,
        step_type: str,
        errors: Sequence[BaseException] = (),
        partial: Mapping[str, Any] | None = None,
        outcomes: Mapping[str, Outcome] | None = None,
        attempts: int = 1,
        elapsed: float = 0.0,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, step_name=step_name, step_type=step_type)
        self.errors = tuple(errors)
        self.partial: Mapping[str, Any] = dict(partial or {})
        self.outcomes: Mapping[str, Outcome] = dict(outcomes or {})
        self.attempts = attempts
        self.elapsed = elapsed
        self.retryable = retryable


class WorkersExhaustedError(_RunError):
    """No worker thread is free for a sync handler: all of them are still running calls
    that were abandoned at their deadline (``FlowExecutor(max_threads=...)`` sets how
    many there are). Raised at once instead of waiting for threads that may never finish.

    Attributes:
        max_threads: the executor's thread budget.
        abandoned: names of the steps whose abandoned calls hold the threads.
    """

    code = ErrorCode.WORKERS_EXHAUSTED
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        step_name: str | None,
        step_type: str | None,
        max_threads: int,
        abandoned: Sequence[str] = (),
    ) -> None:
        super().__init__(message, step_name=step_name, step_type=step_type)
        self.max_threads = max_threads
        self.abandoned: tuple[str, ...] = tuple(abandoned)


class DeadlineExceededError(_RunError, TimeoutError):
    """A deadline expired: the common base of :class:`StepTimeoutError` and
    :class:`FlowTimeoutError` (``except DeadlineExceededError`` catches both).

    Attributes:
        timeout: the budget in seconds that expired.
        elapsed: seconds the step (or flow) ran before it was stopped.
        partial: values of the children that finished, by name, in declaration order.
        pending: names of the children that had not finished.
        outcomes: every child's :class:`Outcome`, by name.
        overrun: seconds it ran past its deadline when it ended late instead of being
            stopped, else ``None``.
    """

    code = ErrorCode.TIMEOUT
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        step_name: str | None,
        step_type: str | None,
        timeout: float,
        elapsed: float,
        partial: Mapping[str, Any] | None = None,
        pending: Sequence[str] = (),
        outcomes: Mapping[str, Outcome] | None = None,
        overrun: float | None = None,
    ) -> None:
        super().__init__(message, step_name=step_name, step_type=step_type)
        self.timeout = timeout
        self.elapsed = elapsed
        self.partial: Mapping[str, Any] = dict(partial or {})
        self.pending: tuple[str, ...] = tuple(pending)
        self.outcomes: Mapping[str, Outcome] = dict(outcomes or {})
        self.overrun = overrun


class StepTimeoutError(DeadlineExceededError):
    """A step's own deadline expired; raised by the step that owns that deadline.

    Attributes:
        timeout: the step's budget in seconds.
        elapsed: seconds the step ran before it was stopped.
        partial: values of the children that finished, by name, in declaration order.
        pending: names of the children that had not finished (running or never started).
        outcomes: every child's :class:`Outcome`, by name, in declaration order.
        overrun: seconds the step ran past its deadline when it ended late instead of
            being stopped (it held the event loop or ignored the cancellation), else
            ``None``.
    """


class FlowTimeoutError(DeadlineExceededError):
    """The whole-flow deadline (``Flow(timeout=...)``) expired.

    Attributes:
        flow_name: the flow's name.
        timeout, elapsed, partial, pending, outcomes: as for :class:`StepTimeoutError`,
            over the flow's top-level steps.
    """

    def __init__(
        self,
        message: str,
        *,
        flow_name: str,
        timeout: float,
        elapsed: float,
        partial: Mapping[str, Any] | None = None,
        pending: Sequence[str] = (),
        outcomes: Mapping[str, Outcome] | None = None,
        overrun: float | None = None,
    ) -> None:
        super().__init__(
            message,
            step_name=None,
            step_type="flow",
            timeout=timeout,
            elapsed=elapsed,
            partial=partial,
            pending=pending,
            outcomes=outcomes,
            overrun=overrun,
        )
        self.flow_name = flow_name
