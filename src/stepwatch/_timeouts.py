"""Timeout values: validation, the :class:`TimeoutOptions` value object and resolution.

Rules: seconds as ``float`` (``timedelta`` accepted); ``None`` means "not set
here, fall through"; ``math.inf`` means "explicitly no limit at this level"; zero, negatives,
NaN, booleans, strings and other non-numbers are rejected with a :class:`ValidationError`
naming the field and the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from ._errors import ValidationError

__all__ = [
    "TimeoutOptions",
    "TimeoutValue",
    "as_float",
    "resolve_timeout",
    "validate_timeout",
]

TimeoutValue = float | int | timedelta | None
"""What a timeout field accepts: seconds, a ``timedelta``, ``math.inf`` or ``None``."""


def validate_timeout(field_name: str, value: object, *, where: str | None = None) -> float | None:
    """Check one timeout value and return it as seconds (``None`` stays ``None``).

    Args:
        field_name: the error's ``field``, e.g. ``"fetch.timeout"`` (see ValidationError).
        value: the value given.
        where: how the message names the field (default: ``field_name``), e.g.
            ``"Request('fetch').timeout"``.

    Raises:
        ValidationError: for zero, negatives, NaN, booleans, strings and other non-numbers.
    """
    if value is None:
        return None
    where = field_name if where is None else where
    if isinstance(value, bool):
        raise ValidationError(
            f"{where} must be a positive number of seconds, math.inf or None; "
            f"got the boolean {value!r}",
            field=field_name,
            value=value,
        )
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = as_float(field_name, value, where=where)
    else:
        raise ValidationError(
            f"{where} must be a positive number of seconds, a timedelta, math.inf or "
            f"None; got {value!r} ({type(value).__name__})",
            field=field_name,
            value=value,
        )
    if math.isnan(seconds):
        raise ValidationError(
            f"{where} must be a positive number of seconds; got NaN",
            field=field_name,
            value=value,
        )
    if seconds <= 0:
        raise ValidationError(
            f"{where} must be a positive number of seconds (use math.inf for no limit, "
            f"None to inherit); got {value!r}",
            field=field_name,
            value=value,
        )
    return seconds


def as_float(field_name: str, value: int | float, *, where: str | None = None) -> float:
    """``float(value)``, or a :class:`ValidationError` for an int too large for a float."""
    try:
        return float(value)
    except OverflowError:
        raise ValidationError(
            f"{where or field_name} is too large to be a number of seconds (use math.inf for no "
            f"limit); got an int of {len(str(value))} digits",
            field=field_name,
            value=value,
        ) from None


_UNSET: Any = object()


@dataclass(frozen=True, slots=True, init=False)
class TimeoutOptions:
    """Per-step-type timeouts plus a default, like ``httpx.Timeout``.

    ``TimeoutOptions(2.0)`` sets the default for every step type;
    ``TimeoutOptions(request=0.5, loop=math.inf)`` sets types and leaves the default unset.
    Custom step types go in ``types={"mytype": 1.0}``. Every value is validated.

    Example::

        >>> TimeoutOptions(5, request=0.25)
        TimeoutOptions(default=5.0, request=0.25)
    """

    default: float | None
    per_type: Mapping[str, float | None] = field(default_factory=dict)

    def __init__(
        self,
        default: TimeoutValue = None,
        *,
        request: TimeoutValue = None,
        transform: TimeoutValue = None,
        branch: TimeoutValue = None,
        loop: TimeoutValue = None,
        sequence: TimeoutValue = None,
        parallel: TimeoutValue = None,
        delay: TimeoutValue = None,
        types: Mapping[str, TimeoutValue] | None = None,
    ) -> None:
        object.__setattr__(self, "default", validate_timeout("TimeoutOptions.default", default))
        given: dict[str, TimeoutValue] = {
            "request": request,
            "transform": transform,
            "branch": branch,
            "loop": loop,
            "sequence": sequence,
            "parallel": parallel,
            "delay": delay,
        }
        if types is not None:
            if not isinstance(types, Mapping):
                raise ValidationError(
                    f"TimeoutOptions.types must be a mapping of step type to seconds; "
                    f"got {types!r}",
                    field="TimeoutOptions.types",
                    value=types,
                )
            for key, val in types.items():
                if not isinstance(key, str) or not key:
                    raise ValidationError(
                        f"TimeoutOptions.types keys must be step type names; got {key!r}",
                        field="TimeoutOptions.types",
                        value=key,
                    )
                given[key] = val
        per_type = {
            key: validate_timeout(f"TimeoutOptions.{key}", val)
            for key, val in given.items()
            if val is not None
        }
        object.__setattr__(self, "per_type", MappingProxyType(per_type))

    def for_type(self, step_type: str) -> float | None:
        """Return the timeout set for ``step_type`` (``None`` if this level sets none)."""
        return self.per_type.get(step_type)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimeoutOptions):
            return NotImplemented
        return self.default == other.default and dict(self.per_type) == dict(other.per_type)

    def __hash__(self) -> int:
        return hash((self.default, tuple(sorted(self.per_type.items()))))

    def __repr__(self) -> str:
        parts = [] if self.default is None else [f"default={self.default!r}"]
        parts += [f"{key}={val!r}" for key, val in self.per_type.items()]
        return f"TimeoutOptions({', '.join(parts)})"


def coerce_options(
    field_name: str, value: object, *, where: str | None = None
) -> TimeoutOptions | None:
    """Accept ``None``, a :class:`TimeoutOptions`, or a single default value."""
    if value is None or isinstance(value, TimeoutOptions):
        return value
    if isinstance(value, bool | int | float | timedelta):
        return TimeoutOptions(value)
    raise ValidationError(
        f"{where or field_name} must be a TimeoutOptions, a number of seconds or None; "
        f"got {value!r} "
        f"({type(value).__name__})",
        field=field_name,
        value=value,
    )


def resolve_timeout(
    step_type: str,
    step_timeout: float | None,
    builtin: float | None,
    flow_options: TimeoutOptions | None,
    executor_options: TimeoutOptions | None,
) -> float | None:
    """Resolve a step's budget; first set wins.

    step's own ``timeout`` → flow's options for the type → flow's default → executor's
    options for the type → executor's default → ``builtin``, the step class's
    ``default_timeout``. ``math.inf`` at any level stops the search and means "no
    limit"; the result is then ``None``.
    """
    found: float | None = step_timeout
    if found is None and flow_options is not None:
        found = flow_options.per_type.get(step_type)
        if found is None:
            found = flow_options.default
    if found is None and executor_options is not None:
        found = executor_options.per_type.get(step_type)
        if found is None:
            found = executor_options.default
    if found is None:
        found = builtin
    if found is None or math.isinf(found):
        return None
    return found
