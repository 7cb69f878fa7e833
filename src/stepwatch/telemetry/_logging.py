"""structlog events for steps that time out, fail, overrun or come near their timeout.

Logger name ``stepwatch`` (a lazy proxy: the application's structlog configuration
applies; the library never calls ``structlog.configure`` and binds nothing into the
application's context). Events:

* ``step.started`` / ``step.finished`` at debug (only once the application has configured
  structlog: its unconfigured default would print every step);
* ``step.timeout`` (``flow.timeout`` for the whole-flow deadline), ``step.failed``,
  ``step.near_timeout`` and ``step.overrun`` at warning.

Keys: ``flow``, ``run_id``, ``step``, ``step_type``, ``timeout`` (s, ``None`` when
unbounded), and on the events logged when a step ends also ``elapsed`` (s), ``outcome``,
``cause`` (``None`` unless cancelled), ``attempts``; plus ``pending`` on timeouts,
``error``/``error_type`` on failures, ``budget_ratio`` on near-timeouts, ``overrun`` (s)
on overruns. A step that logs nothing costs no logger; logging never raises into a flow.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Final

import structlog

from .._outcome import Status

if TYPE_CHECKING:
    from .._context import StepContext
    from .._record import StepEnded

__all__ = ["LOGGER_NAME", "Logging"]

LOGGER_NAME: Final = "stepwatch"
_MAX_PENDING: Final = 100
_DEBUG: Final = logging.DEBUG

_logger = structlog.get_logger(LOGGER_NAME)


def _debug_enabled() -> bool:
    """Whether step.started/step.finished go out: structlog configured, debug enabled."""
    if not structlog.is_configured():
        return False
    try:
        return bool(_logger.bind().is_enabled_for(_DEBUG))
    except Exception:
        return True


def _budget(timeout: float | None) -> float | None:
    return None if timeout is None or math.isinf(timeout) else timeout


class Logging:
    """The log events of every step of one FlowExecutor."""

    __slots__ = ()

    def start(self, ctx: StepContext) -> bool:
        """Log ``step.started`` if debug events go out; return whether they do."""
        if not _debug_enabled():
            return False
        step = ctx.step
        assert step is not None
        _logger.debug(
            "step.started",
            flow=ctx.flow_name,
            run_id=ctx.run_id,
            step=step.name,
            step_type=step.type,
            timeout=_budget(ctx.timeout),
        )
        return True

    def end(self, record: StepEnded, debug: bool) -> None:
        outcome = record.outcome
        status = outcome.status
        result = record.result
        failed_here = status is Status.FAILED and record.arose_here
        timed_out = result == "timeout"
        near = record.near_timeout
        if not (debug or timed_out or failed_here or near or outcome.overrun is not None):
            return  # nothing to say: no logger, no fields
        step = record.step
        fields: dict[str, Any] = {
            "flow": record.flow,
            "run_id": record.run_id,
            "step": step.name,
            "step_type": step.type,
            "timeout": _budget(outcome.timeout),
            "elapsed": round(outcome.elapsed, 6),
            "outcome": result,
            "cause": outcome.cause.value if outcome.cause is not None else None,
            "attempts": outcome.attempts,
        }
        log = _logger.bind()
        if timed_out:
            log.warning(
                "flow.timeout" if step.type == "flow" else "step.timeout",
                pending=list(record.pending[:_MAX_PENDING]),
                **fields,
            )
        elif failed_here:
            error = record.exception
            log.warning("step.failed", error=str(error), error_type=record.error_type, **fields)
        if outcome.overrun is not None:
            log.warning("step.overrun", overrun=round(outcome.overrun, 6), **fields)
        if near:
            assert record.budget_ratio is not None
            log.warning("step.near_timeout", budget_ratio=round(record.budget_ratio, 4), **fields)
        if debug:
            log.debug("step.finished", **fields)
