"""The two budget header formats: gRPC's ``grpc-timeout`` and plain milliseconds.

Both carry a *relative* duration (time left), so no clock synchronisation is needed.
Parsing is strict and bounded: anything that is not exactly the format is invalid
(``None``), never an exception, never a guess. Formatting always rounds *down*, so a
budget sent on is never longer than the time that was left.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from ._config import InboundBudget

__all__ = [
    "Arrival",
    "format_grpc_timeout",
    "format_ms",
    "parse_grpc_timeout",
    "parse_ms",
    "resolve",
]

MAX_VALUE_LENGTH = 32
"""Longer header values are invalid without being looked at further."""

# gRPC over HTTP/2: Timeout → "grpc-timeout" TimeoutValue TimeoutUnit,
# TimeoutValue → {positive integer as ASCII string of at most 8 digits}
_GRPC = re.compile(r"([0-9]{1,8})([HMSmun])")
_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_GRPC_DIVISORS = {"m": 1e3, "u": 1e6, "n": 1e9}  # dividing keeps "700m" == 0.7 exactly
# finest unit first: the first one whose count fits in 8 digits keeps the most precision
_GRPC_FORMAT = (("n", 1e9), ("u", 1e6), ("m", 1e3), ("S", 1.0), ("M", 1 / 60), ("H", 1 / 3600))
_GRPC_MAX = 99_999_999

# milliseconds, optionally with up to 6 decimals: "250", "12.5"
_MS = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,6}))?")


def parse_grpc_timeout(value: str) -> float | None:
    """Seconds in a ``grpc-timeout`` value (``"250m"``, ``"5S"``), or ``None`` if invalid.

    Surrounding whitespace is ignored (HTTP's optional whitespace); anything else that is
    not 1–8 ASCII digits followed by one of ``H M S m u n`` is invalid.
    """
    if len(value) > MAX_VALUE_LENGTH:
        return None
    match = _GRPC.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    count, unit = int(match[1]), match[2]
    divisor = _GRPC_DIVISORS.get(unit)
    return count / divisor if divisor is not None else count * _GRPC_UNITS[unit]


def format_grpc_timeout(seconds: float) -> str:
    """``seconds`` as a ``grpc-timeout`` value, rounded down, in the finest unit that fits.

    Negative values give ``"0n"``; values beyond the format's range give its maximum.
    """
    if not seconds > 0:  # also NaN
        return "0n"
    if math.isinf(seconds):
        return f"{_GRPC_MAX}H"
    for unit, per_second in _GRPC_FORMAT:
        count = math.floor(seconds * per_second)
        if count <= _GRPC_MAX:
            return f"{count}{unit}"
    return f"{_GRPC_MAX}H"


def parse_ms(value: str) -> float | None:
    """Seconds in a milliseconds value (``"250"``, ``"12.5"``), or ``None`` if invalid.

    Accepts 1–12 ASCII digits with an optional fraction of 1–6 digits; signs, exponents,
    ``nan``/``inf``, spaces inside, commas and everything else are invalid.
    """
    if len(value) > MAX_VALUE_LENGTH:
        return None
    match = _MS.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    fraction = match[2] or ""
    milliseconds = int(match[1]) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
    return milliseconds / 1000


def format_ms(seconds: float) -> str:
    """``seconds`` as milliseconds with at most 3 decimals, rounded down (``"249.873"``)."""
    if not seconds > 0:
        return "0"
    micros = min(math.floor(seconds * 1e6), 999_999_999_999_999)
    whole, fraction = divmod(micros, 1000)
    return f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") if fraction else str(whole)


@dataclass(frozen=True, slots=True)
class Arrival:
    """The budget a request arrived with (internal)."""

    budget: float | None  # seconds; None = no deadline
    source: str  # header | default | none | invalid
    invalid: bool  # a budget header was present but unusable


def resolve(config: InboundBudget, headers: Iterable[tuple[bytes, bytes]]) -> Arrival:
    """The request's budget: the smallest valid header value, else the default; capped."""
    grpc = config.grpc_header.encode("latin-1") if config.grpc_header else None
    ms = config.ms_header.encode("latin-1") if config.ms_header else None
    best = math.inf
    found = invalid = False
    for name, raw in headers:
        if name == grpc:
            value = parse_grpc_timeout(raw.decode("latin-1"))
        elif name == ms:
            value = parse_ms(raw.decode("latin-1"))
        else:
            continue
        if value is None:
            invalid = True
        else:
            found = True
            best = min(best, value)
    default = cast("float | None", config.default)
    if found:
        budget: float | None = best
        source = "header"
    else:
        budget = default
        source = "invalid" if invalid else ("default" if default is not None else "none")
    cap = cast("float | None", config.max_budget)
    if cap is not None and (budget is None or budget > cap):
        budget = cap
    return Arrival(budget, source, invalid)
