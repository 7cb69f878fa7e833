"""structlog events for every step (DESIGN.md §5 "Logs").

Logger name ``stepwatch`` (a lazy proxy: the application's structlog configuration
applies; the library never calls ``structlog.configure`` and binds nothing into the
application's context). Events:

* ``step.started`` / ``step.finished`` at debug (only once the application has configured
  structlog: its unconfigured default would print every step);
* ``step.timeout`` (``flow.timeout`` for the whole-flow deadline), ``step.failed``,
  ``step.near_timeout`` and ``step.overrun`` (the step ran past its deadline instead of
  being stopped: it held the event loop or ignored the cancellation) at warning.

Keys: ``flow``, ``run_id``, ``step``, ``step_type``, ``timeout`` (s, ``None`` when
unbounded), and on the events logged when a step ends also ``elapsed`` (s), ``outcome``,
``cause`` (``None`` unless cancelled), ``attempts``; plus ``pending`` on timeouts,
``error``/``error_type`` on failures, ``budget_ratio`` on near-timeouts, ``overrun`` (s)
on overruns. Logging never
raises into a flow and costs one ``bind()`` per step when the debug level is filtered out.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final

import structlog
from anyio import current_time
from opentelemetry import trace

from ._classify import FAILURE, SUCCESS, TIMEOUT, arose_here, classify, error_type

if TYPE_CHECKING:
    from .._context import StepContext
    from .._protocols import ExecutorDecorator, StepExecutor
    from .._steps import Step

__all__ = ["LOGGER_NAME", "add_trace_ids", "make_logging_decorator"]

LOGGER_NAME: Final = "stepwatch"
NEAR_TIMEOUT_RATIO: Final = 0.8
"""Share of its budget above which a finished step logs ``step.near_timeout``."""
_MAX_PENDING: Final = 100
_DEBUG: Final = logging.DEBUG

_logger = structlog.get_logger(LOGGER_NAME)


def _enabled(log: Any, level: int) -> bool:
    """Whether ``log`` emits ``level`` (True when the logger cannot tell)."""
    try:
        return bool(log.is_enabled_for(level))
    except Exception:
        return True


def _budget(ctx: StepContext) -> float | None:
    timeout = ctx.timeout
    return None if timeout is None or math.isinf(timeout) else timeout


def _log_start(step: Step, ctx: StepContext) -> tuple[Any, bool]:
    log = _logger.bind()  # one bind per step; the application's config applies
    # structlog's unconfigured default prints every level: keep an application that never
    # configured structlog free of per-step debug lines (warnings still go out).
    debug = structlog.is_configured() and _enabled(log, _DEBUG)
    if debug:
        log.debug(
            "step.started",
            flow=ctx.flow_name,
            run_id=ctx.run_id,
            step=step.name,
            step_type=step.type,
            timeout=_budget(ctx),
        )
    return log, debug


def _log_end(
    log: Any, debug: bool, step: Step, ctx: StepContext, exc: BaseException | None
) -> None:
    outcome, cause = classify(ctx, exc)
    elapsed = current_time() - ctx.started
    timeout = _budget(ctx)
    fields: dict[str, Any] = {
        "flow": ctx.flow_name,
        "run_id": ctx.run_id,
        "step": step.name,
        "step_type": step.type,
        "timeout": timeout,
        "elapsed": round(elapsed, 6),
        "outcome": outcome,
        "cause": cause.value if cause is not None else None,
        "attempts": ctx.attempt,
    }
    if outcome == TIMEOUT:
        error = exc if exc is not None else ctx.error
        pending = getattr(error, "pending", None)
        if pending is None and ctx.progress is not None:
            pending = ctx.progress.pending()
        log.warning(
            "flow.timeout" if step.type == "flow" else "step.timeout",
            pending=list(pending[:_MAX_PENDING]) if pending is not None else [],
            **fields,
        )
    elif outcome == FAILURE and exc is not None and arose_here(step, ctx, exc):
        log.warning("step.failed", error=str(exc), error_type=error_type(outcome, exc), **fields)
    if ctx.overrun is not None:
        log.warning("step.overrun", overrun=round(ctx.overrun, 6), **fields)
    if outcome in (SUCCESS, FAILURE) and timeout is not None:
        share = elapsed / timeout
        if share > NEAR_TIMEOUT_RATIO:
            log.warning("step.near_timeout", budget_ratio=round(share, 4), **fields)
    if debug:
        log.debug("step.finished", **fields)


class _LoggedExecutor:
    """Wraps one executor: structlog events around every ``execute``."""

    __slots__ = ("inner",)

    def __init__(self, inner: StepExecutor) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"logged({self.inner!r})"

    def can_execute(self, step: Step) -> bool:
        return self.inner.can_execute(step)

    async def execute(self, step: Step, ctx: StepContext) -> Any:
        try:
            log, debug = _log_start(step, ctx)
        except Exception:  # logging never breaks a flow
            return await self.inner.execute(step, ctx)
        try:
            value = await self.inner.execute(step, ctx)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                _log_end(log, debug, step, ctx, exc)
            raise
        with contextlib.suppress(Exception):
            _log_end(log, debug, step, ctx, None)
        return value


def make_logging_decorator() -> ExecutorDecorator:
    """Build the decorator that logs every step an executor runs (see the module doc).

    Returns:
        An :class:`~stepwatch.ExecutorDecorator`.
    """

    def decorate(executor: StepExecutor) -> StepExecutor:
        return _LoggedExecutor(executor)

    return decorate


def add_trace_ids(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``trace_id`` and ``span_id`` of the current span.

    Opt in by adding it to your processors (before the renderer)::

        structlog.configure(processors=[stepwatch.telemetry.add_trace_ids, ...])

    The ids are lowercase hex (``format_trace_id`` / ``format_span_id``), as Jaeger and
    Tempo show them. Nothing is added when no valid span is current; keys already in the
    event are kept.
    """
    try:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            event_dict.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
            event_dict.setdefault("span_id", trace.format_span_id(span_context.span_id))
    except Exception:
        pass
    return event_dict
