"""Retry policy: exponential backoff with jitter, bounded by the enclosing deadline.

The default predicate, :func:`is_retryable`, knows the transient errors of the HTTP
clients people use (httpx, aiohttp, requests, urllib) by their class names, so stepwatch
imports none of them: ``retry=3`` around an httpx call retries a refused connection, a
read timeout or a 503, and never a 404 or a ``TypeError``. :func:`retry_after` reads how
long a server asked the client to wait (``Retry-After``).
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Final

from ._errors import StepFailedError, StepwatchError, ValidationError
from ._timeouts import as_float

__all__ = ["RETRYABLE_STATUSES", "Retry", "coerce_retry", "is_retryable", "retry_after"]

RETRYABLE_STATUSES: Final = frozenset({429, 502, 503, 504})
"""HTTP statuses the default predicate retries: too many requests, and a gateway or
server saying it is overloaded or gave up. The same list as ``JsonRpcClient``'s."""

# Classes recognised by (top-level module, class name) anywhere in an exception's MRO, so
# that subclasses count and no client library is imported.
_STATUS_ERRORS: Final = frozenset(
    {
        ("httpx", "HTTPStatusError"),  # .response.status_code, .response.headers
        ("requests", "HTTPError"),  # .response (may be None)
        ("aiohttp", "ClientResponseError"),  # .status, .headers
        ("urllib", "HTTPError"),  # urllib.error.HTTPError: .code, .headers
    }
)
_TRANSIENT: Final = frozenset(
    {
        # httpx: ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout (and stepwatch's
        # BudgetExhaustedError); ConnectError, ReadError, WriteError, CloseError; the
        # server closing the connection mid-answer. Not ProxyError, UnsupportedProtocol,
        # LocalProtocolError, DecodingError, TooManyRedirects, InvalidURL.
        ("httpx", "TimeoutException"),
        ("httpx", "NetworkError"),
        ("httpx", "RemoteProtocolError"),
        # aiohttp: every ClientConnectionError (ClientOSError, ClientConnectorError,
        # ServerDisconnectedError, ServerTimeoutError and its connect/socket timeouts,
        # ClientConnectionResetError) and a payload cut short.
        ("aiohttp", "ClientConnectionError"),
        ("aiohttp", "ClientPayloadError"),
    }
)
# TLS failures that retrying cannot fix (wrong certificate, pinned fingerprint mismatch).
_TLS_REJECTED: Final = frozenset(
    {
        ("ssl", "SSLCertVerificationError"),
        ("aiohttp", "ClientConnectorCertificateError"),
        ("aiohttp", "ServerFingerprintMismatch"),
    }
)
# Errors in the code, not in the world: never retried (unless they say retryable = True),
# also when they are OSErrors too (requests' InvalidURL, ssl's certificate errors).
_PROGRAMMING_ERRORS: Final = (
    TypeError,
    ValueError,
    AttributeError,
    LookupError,
    NameError,
    AssertionError,
    NotImplementedError,
    ArithmeticError,
    ImportError,
)
# OSErrors about local files: the same call fails the same way.
_NOT_TRANSIENT_OS: Final = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def _kinds(exc: BaseException) -> set[tuple[str, str]]:
    return {(cls.__module__.partition(".")[0], cls.__name__) for cls in type(exc).__mro__}


def _tls_rejected(exc: BaseException) -> bool:
    """A certificate or fingerprint was rejected: ``exc`` or what it was raised from."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if _kinds(current) & _TLS_REJECTED:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _status_and_headers(exc: BaseException, kinds: set[tuple[str, str]]) -> tuple[int, Any]:
    """The HTTP status (and headers) of a client's status error; ``(0, None)`` if none."""
    if not kinds & _STATUS_ERRORS:
        return 0, None
    try:
        if ("aiohttp", "ClientResponseError") in kinds:
            status, headers = getattr(exc, "status", 0), getattr(exc, "headers", None)
        elif ("urllib", "HTTPError") in kinds:
            status, headers = getattr(exc, "code", 0), getattr(exc, "headers", None)
        else:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", 0)
            headers = getattr(response, "headers", None)
    except Exception:  # a property that raises: nothing to go on
        return 0, None
    if isinstance(status, bool) or not isinstance(status, int):
        return 0, None
    return status, headers


def is_retryable(exc: BaseException) -> bool:
    """The default retry predicate: may trying the same call again succeed?

    In this order:

    * stepwatch's errors say so (``retryable``: a timed-out attempt, exhausted workers,
      a step that failed with a retryable error);
    * an exception group is retryable when every exception in it is;
    * any exception with a ``retryable`` attribute set to ``True`` or ``False`` (as the
      ``stepwatch.http`` errors have) is taken at its word;
    * HTTP status errors of httpx (``HTTPStatusError`` from ``raise_for_status()``),
      aiohttp (``ClientResponseError``), requests (``HTTPError``) and urllib
      (``HTTPError``) are retryable for 429, 502, 503 and 504 only
      (:data:`RETRYABLE_STATUSES`): never another 4xx, nor a 500;
    * programming errors (``TypeError``, ``ValueError``, ``KeyError``,
      ``AttributeError``, ...) never are, even when they are ``OSError`` s too;
    * a rejected TLS certificate never is;
    * transport errors of httpx (its ``TimeoutException`` s, ``NetworkError`` s such as
      ``ConnectError`` / ``ReadError`` / ``WriteError``, and ``RemoteProtocolError``) and
      aiohttp (``ClientConnectionError`` s, ``ServerTimeoutError``,
      ``ClientPayloadError``) are;
    * ``OSError`` s are (connection errors, ``TimeoutError``), except those about local
      files (``FileNotFoundError``, ``PermissionError``, ...);
    * nothing else is.

    The client libraries are recognised by their class names (their subclasses too),
    so none of them is imported. Use it as a building block of your own predicate::

        Retry(retry_on=lambda exc: is_retryable(exc) or isinstance(exc, MyFlakyError))
    """
    if isinstance(exc, StepwatchError):
        return exc.retryable
    if isinstance(exc, BaseExceptionGroup):
        return bool(exc.exceptions) and all(is_retryable(e) for e in exc.exceptions)
    flag = getattr(exc, "retryable", None)
    if isinstance(flag, bool):
        return flag
    kinds = _kinds(exc)
    status, _ = _status_and_headers(exc, kinds)
    if status:
        return status in RETRYABLE_STATUSES
    if kinds & _STATUS_ERRORS:  # a status error without a usable status
        return False
    if isinstance(exc, _PROGRAMMING_ERRORS) or _tls_rejected(exc):
        return False
    if kinds & _TRANSIENT:
        return True
    return isinstance(exc, OSError) and not isinstance(exc, _NOT_TRANSIENT_OS)


def retryable(policy: Retry | None, exc: BaseException) -> bool:
    """Whether ``exc`` is worth another attempt under ``policy``: its ``retry_on``
    predicate, or :func:`is_retryable` without a policy. A predicate that raises says no
    (the step's own error is what it raises, not the predicate's)."""
    try:
        return is_retryable(exc) if policy is None else bool(policy.retry_on(exc))
    except Exception:
        return False


_MAX_RETRY_AFTER_CHARS = 64


def parse_retry_after(value: object, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (``None`` if unusable).

    Accepts a number of seconds (``"120"``; a decimal fraction is tolerated) or an
    HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, compared with ``now``, the Unix time,
    default ``time.time()``; a date in the past is 0). Anything else (empty, negative,
    garbage, over 64 characters) is ``None``: ignored.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str) or len(value) > _MAX_RETRY_AFTER_CHARS:
        return None
    text = value.strip()
    if not text or not text.isascii():
        return None
    whole, dot, fraction = text.partition(".")
    if whole.isdigit() and (not dot or fraction.isdigit()):
        return float(text)  # inf for absurdly many digits: never waited for
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    try:
        stamp = when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, stamp - (time.time() if now is None else now))


def retry_after(error: BaseException) -> float | None:
    """Seconds the server asked to wait before trying again, or ``None``.

    Read from the ``Retry-After`` header of an HTTP status error (httpx's
    ``HTTPStatusError``, aiohttp's ``ClientResponseError``, requests' and urllib's
    ``HTTPError``), or from a ``retry_after`` attribute (seconds) that any exception may
    carry. A :class:`StepFailedError` wrapping one error is looked through. Both forms of
    the header (seconds, HTTP-date) are understood; an unusable value (an attribute that
    raises when read, an int too large for a float) is ``None``.
    """
    seen = 0
    while isinstance(error, StepFailedError) and len(error.errors) == 1 and seen < 64:
        error = error.errors[0]
        seen += 1
    try:
        attribute = getattr(error, "retry_after", None)
        if isinstance(attribute, int | float) and not isinstance(attribute, bool):
            seconds = float(attribute)  # OverflowError for 10**400
            return seconds if seconds >= 0 else None  # nan fails the test too
    except Exception:  # garbage is ignored: the step's own error must stand, not this one
        return None
    _, headers = _status_and_headers(error, _kinds(error))
    if headers is None:
        return None
    try:
        value = headers.get("Retry-After")
    except Exception:
        return None
    return parse_retry_after(value)


def _positive(field_name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(
            f"Retry.{field_name} must be a number; got {value!r}",
            field=f"Retry.{field_name}",
            value=value,
        )
    value = as_float(f"Retry.{field_name}", value)
    if math.isnan(value):
        raise ValidationError(
            f"Retry.{field_name} must be a number; got {value!r}",
            field=f"Retry.{field_name}",
            value=value,
        )
    if value < 0 or (value == 0 and not allow_zero) or math.isinf(value):
        raise ValidationError(
            f"Retry.{field_name} must be a finite number > 0; got {value!r}",
            field=f"Retry.{field_name}",
            value=value,
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry a step on retryable errors with exponential backoff and jitter.

    Each attempt runs under the step's own timeout; the whole series never outlives the
    enclosing deadline: a backoff that would end past it is not slept, the last error is
    raised instead (its message, or a note on it, says why there was no retry).

    When the error carries a ``Retry-After`` (see :func:`retry_after`), the next backoff is
    at least that long; if the server asks for more than ``max_delay``, or the wait would
    end past the enclosing deadline, the step is not retried.

    Args:
        attempts: total attempts including the first (>= 1).
        initial: the first backoff in seconds.
        multiplier: growth factor per attempt.
        max_delay: cap for one backoff, and the longest ``Retry-After`` waited for.
        jitter: ``True`` draws each delay uniformly from ``[delay/2, delay]``.
        retry_on: predicate deciding whether an exception is worth another attempt;
            default :func:`is_retryable` (transient errors of httpx, aiohttp and the
            standard library, HTTP 429/502/503/504, anything with ``retryable = True``).
        respect_retry_after: honour the server's ``Retry-After`` (default ``True``).
    """

    attempts: int = 3
    initial: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 5.0
    jitter: bool = True
    retry_on: Callable[[BaseException], bool] = field(default=is_retryable)
    respect_retry_after: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValidationError(
                f"Retry.attempts must be an int >= 1; got {self.attempts!r}",
                field="Retry.attempts",
                value=self.attempts,
            )
        if self.attempts < 1:
            raise ValidationError(
                f"Retry.attempts must be >= 1; got {self.attempts!r}",
                field="Retry.attempts",
                value=self.attempts,
            )
        _positive("initial", self.initial, allow_zero=True)
        _positive("max_delay", self.max_delay, allow_zero=True)
        if _positive("multiplier", self.multiplier) < 1:
            raise ValidationError(
                f"Retry.multiplier must be >= 1; got {self.multiplier!r}",
                field="Retry.multiplier",
                value=self.multiplier,
            )
        if not callable(self.retry_on):
            raise ValidationError(
                f"Retry.retry_on must be callable; got {self.retry_on!r}",
                field="Retry.retry_on",
                value=self.retry_on,
            )
        if not isinstance(self.respect_retry_after, bool):
            raise ValidationError(
                f"Retry.respect_retry_after must be True or False; got "
                f"{self.respect_retry_after!r}",
                field="Retry.respect_retry_after",
                value=self.respect_retry_after,
            )

    def delay(self, failed_attempt: int) -> float:
        """Backoff to sleep after attempt number ``failed_attempt`` (1-based) failed."""
        try:
            grown = self.initial * self.multiplier ** (failed_attempt - 1)
        except OverflowError:  # thousands of attempts: long past max_delay
            grown = math.inf
        base = min(self.max_delay, grown)
        if self.jitter and base > 0:
            return random.uniform(base / 2, base)
        return base

    def asked_delay(self, error: BaseException) -> float | None:
        """The wait the server asked for with ``error`` (``Retry-After``), if honoured."""
        return retry_after(error) if self.respect_retry_after else None


def coerce_retry(field: str, where: str, value: object) -> Retry | None:
    """Accept ``None``, a :class:`Retry`, or an int number of attempts.

    ``field`` is the error's field (``"fetch.retry"``), ``where`` how the message names
    the owner (``"Request('fetch')"``)."""
    if value is None or isinstance(value, Retry):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Retry(attempts=value)
    raise ValidationError(
        f"{where}.retry must be a stepwatch.Retry, an int number of attempts or None; "
        f"got {value!r} ({type(value).__name__})",
        field=field,
        value=value,
    )
