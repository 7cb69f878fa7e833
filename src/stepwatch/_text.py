"""Bounded text: what stepwatch copies from user data into messages, spans and logs.

An exception message or a list of step names can be arbitrarily large (a 10 MiB message,
10 000 pending children); every place that copies one into an error message, a span or
a log event goes through these, so memory and exposition stay bounded, and the text
exportable as UTF-8. Names that telemetry exports are checked with :func:`encodable`
when they are defined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["MAX_MESSAGE", "MAX_NAMES", "clip", "encodable", "exportable", "listing", "message_of"]

MAX_MESSAGE: Final = 1_000
"""Characters of an exception's message copied into a stepwatch message or event."""

MAX_NAMES: Final = 10
"""Step names listed in a message before ``and N more``."""


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text``, or its first ``limit`` characters and how many more there were; always
    text that UTF-8 can encode (see :func:`exportable`)."""
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit} more characters)"
    return text if text.isascii() else exportable(text)


def listing(names: Sequence[str], limit: int = MAX_NAMES) -> str:
    """``"a, b, c"``, or the first ``limit`` names and ``"and N more"``."""
    shown = ", ".join(clip(name, 200) for name in names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown


def exportable(text: str) -> str:
    """``text`` with any lone surrogate written as its escape (``\\ud800``): what an
    exception's message may hold (``json.loads`` of bad input) and what Prometheus and OTLP,
    which export UTF-8, cannot take; one such message would fail the export of its whole
    span batch. Text that encodes is returned as it is."""
    if encodable(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def encodable(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8, as every exported name must: Prometheus and OTLP
    export text as UTF-8, and one lone surrogate (e.g. from ``json.loads('"\\ud800"')``)
    in a label value makes every scrape of the registry fail."""
    if text.isascii():  # the common case: no encoding, no copy
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def message_of(error: object) -> str:
    """``str(error)``, or a placeholder when that raises: a handler's exception whose
    ``__str__`` is broken must still fail its step like any other (``traceback`` does the
    same)."""
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}: str() failed>"
