"""How stepwatch logs: through the application's structlog, or the standard ``logging`` tree.

A library never writes to stdout on its own and never configures logging. So:

* when the application has configured structlog (``structlog.is_configured()``), events go
  to ``structlog.get_logger("stepwatch")`` and the application's processors decide;
* otherwise they are ordinary :mod:`logging` records on the ``stepwatch`` logger, the
  event's keys in ``extra`` (``record.step``, ``record.flow``, ...), filtered and routed by
  the application's logging configuration. The ``stepwatch`` logger has a ``NullHandler``
  (as the logging HOWTO asks of libraries): an application that configured nothing sees
  nothing.

The level check comes first, so an event nobody listens to costs no logger and no fields.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import structlog

__all__ = ["LOGGER_NAME", "enabled", "log"]

LOGGER_NAME: Final = "stepwatch"

_stdlib = logging.getLogger(LOGGER_NAME)
_stdlib.addHandler(logging.NullHandler())
_structlog = structlog.get_logger(LOGGER_NAME)

_METHODS: Final[dict[int, str]] = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
}


# LogRecord attributes an ``extra`` key must not overwrite (logging raises KeyError)
_RESERVED: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _structlog_enabled(logger: Any, level: int) -> bool:
    try:
        return bool(logger.is_enabled_for(level))
    except Exception:  # a wrapper class without the check: let it filter
        return True


def enabled(level: int) -> bool:
    """Whether an event at ``level`` would go anywhere (cheap; never raises)."""
    try:
        if structlog.is_configured():
            return _structlog_enabled(_structlog.bind(), level)
        return _stdlib.isEnabledFor(level)
    except Exception:
        return False


def log(level: int, event: str, fields: dict[str, Any]) -> None:
    """Emit ``event`` at ``level`` with ``fields``. Never raises. (Callers on the per-step
    path decide whether to log before they build the fields: see telemetry/_logging.py.)"""
    try:
        if structlog.is_configured():
            logger = _structlog.bind()
            if not _structlog_enabled(logger, level):
                return
            getattr(logger, _METHODS.get(level, "warning"))(event, **fields)
            return
        if not _stdlib.isEnabledFor(level):
            return
        text = " ".join(f"{key}={value!r}" for key, value in fields.items())
        extra = {(f"stepwatch_{k}" if k in _RESERVED else k): v for k, v in fields.items()}
        extra["event"] = event
        _stdlib.log(level, "%s %s", event, text, extra=extra)
    except Exception:  # a broken logger never breaks a flow
        pass
