"""InboundBudget and OutboundBudget: how a deadline enters and leaves a service."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal, TypeVar

from .._errors import ValidationError
from .._timeouts import as_float

__all__ = ["GRPC_TIMEOUT", "REQUEST_TIMEOUT_MS", "InboundBudget", "OutboundBudget"]

GRPC_TIMEOUT: Final = "grpc-timeout"
"""gRPC's budget header: 1–8 digits and a unit (``H M S m u n``), e.g. ``250m``."""
REQUEST_TIMEOUT_MS: Final = "x-request-timeout-ms"
"""The plain budget header: milliseconds left, e.g. ``250`` or ``12.5``."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name


def _seconds(owner: str, field: str, value: object, *, zero: bool) -> float:
    where = f"{owner}.{field}"
    if isinstance(value, timedelta):
        value = value.total_seconds()
    elif isinstance(value, int) and not isinstance(value, bool):
        value = as_float(where, value)  # an int too large for a float: a ValidationError
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValidationError(
            f"{where} must be a number of seconds or a timedelta; got {value!r}",
            field=where,
            value=value,
        )
    if value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValidationError(f"{where} must be {bound}; got {value!r}", field=where, value=value)
    return float(value)


def _header(owner: str, field: str, value: object) -> str | None:
    where = f"{owner}.{field}"
    if value is None:
        return None
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        raise ValidationError(
            f"{where} must be an HTTP header name (or None to switch it off); got {value!r}",
            field=where,
            value=value,
        )
    return value.lower()


def _headers(owner: str, grpc: object, ms: object) -> tuple[str | None, str | None]:
    grpc_name, ms_name = _header(owner, "grpc_header", grpc), _header(owner, "ms_header", ms)
    if grpc_name is not None and grpc_name == ms_name:
        raise ValidationError(
            f"{owner}.grpc_header and {owner}.ms_header must differ; both are {grpc_name!r}",
            field=f"{owner}.ms_header",
            value=ms,
        )
    return grpc_name, ms_name


@dataclass(frozen=True, slots=True)
class InboundBudget:
    """How a server reads the caller's budget (see :class:`DeadlineMiddleware`).

    The budget is the smallest valid value among the budget headers, capped by
    ``max_budget``; without a usable header, ``default`` applies. A budget never grows
    beyond what the caller sent or ``max_budget``.

    Args:
        default: seconds (or a ``timedelta``) when the request carries no usable budget;
            ``None`` = no deadline then.
        max_budget: the most any request gets, whatever it asks for; ``None`` = no cap.
        grpc_header: name of the header in gRPC's ``grpc-timeout`` format; ``None`` = off.
        ms_header: name of the header holding milliseconds; ``None`` = off.
        on_invalid: ``"ignore"`` (default) treats an unparseable budget header as absent;
            ``"reject"`` answers ``400`` without calling the application.

    Raises:
        ValidationError: a negative, zero, NaN or non-numeric duration, ``default`` above
            ``max_budget``, an invalid or duplicate header name, an unknown ``on_invalid``;
            ``.field`` names the field.
    """

    default: float | timedelta | None = None
    max_budget: float | timedelta | None = None
    grpc_header: str | None = GRPC_TIMEOUT
    ms_header: str | None = REQUEST_TIMEOUT_MS
    on_invalid: Literal["ignore", "reject"] = "ignore"

    def __post_init__(self) -> None:
        owner, set_ = "InboundBudget", object.__setattr__
        default = self.default
        if default is not None:
            seconds = _seconds(owner, "default", default, zero=False)
            set_(self, "default", seconds)
        if self.max_budget is not None:
            cap = _seconds(owner, "max_budget", self.max_budget, zero=False)
            set_(self, "max_budget", cap)
            if default is not None and seconds > cap:
                raise ValidationError(
                    f"{owner}.default ({default!r}) must not exceed max_budget ({cap!r})",
                    field=f"{owner}.default",
                    value=default,
                )
        grpc, ms = _headers(owner, self.grpc_header, self.ms_header)
        set_(self, "grpc_header", grpc)
        set_(self, "ms_header", ms)
        if self.on_invalid not in ("ignore", "reject"):
            raise ValidationError(
                f"{owner}.on_invalid must be 'ignore' or 'reject'; got {self.on_invalid!r}",
                field=f"{owner}.on_invalid",
                value=self.on_invalid,
            )


@dataclass(frozen=True, slots=True)
class OutboundBudget:
    """How an outbound call carries the time left (see :class:`DeadlineTransport`).

    Inside an anyio deadline (any stepwatch step), each request gets the time left minus
    ``margin`` in the budget headers and its httpx timeouts capped by the time left; when
    no more than ``margin`` is left, the request is not sent.

    Args:
        margin: seconds (or a ``timedelta``) kept back for the network and the reply's
            way back; ``0`` sends the whole time left.
        grpc_header: header to send in gRPC's ``grpc-timeout`` format; ``None`` = don't.
        ms_header: header to send in milliseconds; ``None`` = don't.
        cap_timeouts: cap httpx's connect/read/write/pool timeouts by the time left.
        propagate_trace: inject the OpenTelemetry context through the global propagators
            (skipped when the request already carries it, e.g. from the httpx
            instrumentation).

    Raises:
        ValidationError: a negative, NaN or non-numeric margin, an invalid or duplicate
            header name, non-bool switches; ``.field`` names the field.
    """

    margin: float | timedelta = 0.01
    grpc_header: str | None = GRPC_TIMEOUT
    ms_header: str | None = REQUEST_TIMEOUT_MS
    cap_timeouts: bool = True
    propagate_trace: bool = True

    def __post_init__(self) -> None:
        owner, set_ = "OutboundBudget", object.__setattr__
        margin = _seconds(owner, "margin", self.margin, zero=True)
        if math.isinf(margin):
            raise ValidationError(
                f"{owner}.margin must be finite; got {self.margin!r}",
                field=f"{owner}.margin",
                value=self.margin,
            )
        set_(self, "margin", margin)
        grpc, ms = _headers(owner, self.grpc_header, self.ms_header)
        set_(self, "grpc_header", grpc)
        set_(self, "ms_header", ms)
        for name in ("cap_timeouts", "propagate_trace"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(
                    f"{owner}.{name} must be True or False; got {getattr(self, name)!r}",
                    field=f"{owner}.{name}",
                    value=getattr(self, name),
                )


_Config = TypeVar("_Config", InboundBudget, OutboundBudget)


def config_or_default(field: str, value: object, kind: type[_Config]) -> _Config:
    """``value`` if it is a ``kind`` (an :class:`InboundBudget` or :class:`OutboundBudget`),
    a default one if ``None``; else a :class:`ValidationError` naming ``field``."""
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise ValidationError(
            f"{field} must be a stepwatch.http.{kind.__name__} or None; got {value!r}",
            field=field,
            value=value,
        )
    return value
