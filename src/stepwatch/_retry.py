"""Retry policy: exponential backoff with jitter, bounded by the enclosing deadline."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ._errors import StepwatchError, ValidationError
from ._timeouts import as_float

__all__ = ["Retry", "coerce_retry", "is_retryable"]


def is_retryable(exc: BaseException) -> bool:
    """Default retry predicate.

    Retries errors that say so (``retryable = True``, as :class:`StepTimeoutError` of one
    attempt does) and ``OSError`` (connection errors, ``TimeoutError``). Never retries
    validation errors or anything else.
    """
    if isinstance(exc, StepwatchError):
        return exc.retryable
    flag = getattr(exc, "retryable", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(exc, OSError)


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
    """Retry a step on retryable errors with exponential backoff and full jitter.

    Each attempt runs under the step's own timeout; the whole series never outlives the
    enclosing deadline: a backoff that would end past it is not slept, the last error is
    raised instead.

    Args:
        attempts: total attempts including the first (>= 1).
        initial: the first backoff in seconds.
        multiplier: growth factor per attempt.
        max_delay: cap for one backoff.
        jitter: ``True`` draws each delay uniformly from ``[delay/2, delay]``.
        retry_on: predicate deciding whether an exception is worth another attempt.
    """

    attempts: int = 3
    initial: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 5.0
    jitter: bool = True
    retry_on: Callable[[BaseException], bool] = field(default=is_retryable)

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
