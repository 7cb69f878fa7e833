"""Log events for steps that time out, fail, overrun or come near their timeout.

Emitted through :mod:`stepwatch._log`: the application's structlog configuration if it
has one, else ordinary ``logging`` records on the ``stepwatch`` logger (keys in
``extra``). Events:

* ``step.started`` / ``step.finished`` at debug;
* ``step.timeout`` (``flow.timeout`` for the whole-flow deadline), ``step.failed``,
  ``step.near_timeout`` and ``step.overrun`` at warning.

Keys: ``flow``, ``run_id``, ``step``, ``step_type``, ``timeout`` (s, ``None`` when
unbounded), and on the events logged when a step ends also ``elapsed`` (s), ``outcome``,
``cause`` (``None`` unless cancelled), ``attempts``; plus ``pending`` (the first 10) and
``pending_count``, ``error``/``error_type`` on failures (the message cut at 1 000
characters), ``budget_ratio`` on near-timeouts, ``overrun`` (s)
on overruns. A step that logs nothing costs no logger and no fields (the debug level is
looked at once a second);
logging never raises into a flow.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Final

from .._log import enabled, log
from .._steps import FLOW_TYPE
from .._text import clip, message_of

if TYPE_CHECKING:
    from .._context import StepContext
    from .._record import StepEnded

__all__ = ["Logging"]

_MAX_PENDING: Final = 10
_DEBUG: Final = logging.DEBUG
_WARNING: Final = logging.WARNING


def _budget(timeout: float | None) -> float | None:
    return None if timeout is None or math.isinf(timeout) else timeout


_RECHECK: Final = 1.0  # seconds a debug-level decision is reused (a level change takes effect)


class Logging:
    """The log events of every step of one FlowExecutor."""

    __slots__ = ("_debug", "_debug_until")

    def __init__(self) -> None:
        self._debug = False
        self._debug_until = -math.inf

    def debug(self) -> bool:
        """Whether debug events go anywhere (decided at most once a second: no logger per
        step to find out)."""
        now = time.monotonic()
        if now >= self._debug_until:
            self._debug = enabled(_DEBUG)
            self._debug_until = now + _RECHECK
        return self._debug

    def start(self, ctx: StepContext) -> bool:
        """Log ``step.started`` if debug events go anywhere; return whether they do."""
        if not self.debug():
            return False
        step = ctx.step
        assert step is not None
        log(
            _DEBUG,
            "step.started",
            {
                "flow": ctx.flow_name,
                "run_id": ctx.run_id,
                "step": step.name,
                "step_type": step.type,
                "timeout": _budget(ctx.timeout),
            },
        )
        return True

    def end(self, record: StepEnded, debug: bool, result: str) -> None:
        """Log what the step's end calls for; ``result`` is ``record.result``."""
        outcome = record.outcome
        failed_here = result == "failure" and record.arose_here
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
        if timed_out:
            event = "flow.timeout" if step.type == FLOW_TYPE else "step.timeout"
            pending = {
                "pending": list(record.pending[:_MAX_PENDING]),
                "pending_count": len(record.pending),
            }
            log(_WARNING, event, {**pending, **fields})
        elif failed_here:
            error = record.exception
            log(
                _WARNING,
                "step.failed",
                {"error": clip(message_of(error)), "error_type": record.error_type, **fields},
            )
        if outcome.overrun is not None:
            log(_WARNING, "step.overrun", {"overrun": round(outcome.overrun, 6), **fields})
        if near:
            assert record.budget_ratio is not None
            log(
                _WARNING,
                "step.near_timeout",
                {"budget_ratio": round(record.budget_ratio, 4), **fields},
            )
        if debug:
            log(_DEBUG, "step.finished", fields)
