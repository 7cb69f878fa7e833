"""Budget header formats, budget resolution and the configuration value objects."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepwatch import ValidationError
from stepwatch.http import InboundBudget, OutboundBudget
from stepwatch.http._budget import (
    format_grpc_timeout,
    format_ms,
    parse_grpc_timeout,
    parse_ms,
    resolve,
)

HOSTILE = [
    pytest.param("", id="empty"),
    pytest.param(" ", id="blank"),
    pytest.param("-5", id="negative"),
    pytest.param("-5m", id="negative-grpc"),
    pytest.param("nan", id="nan"),
    pytest.param("NaN", id="NaN"),
    pytest.param("inf", id="inf"),
    pytest.param("Infinity", id="Infinity"),
    pytest.param("1e3", id="exponent"),
    pytest.param("0x10", id="hex"),
    pytest.param("+5", id="plus"),
    pytest.param("5 0", id="inner-space"),
    pytest.param("100, 200", id="comma-list"),
    pytest.param("١٢٣", id="arabic-indic-digits"),
    pytest.param("１２", id="fullwidth-digits"),
    pytest.param("5s", id="lowercase-s-unit"),
    pytest.param("123456789m", id="nine-digits"),
    pytest.param("9" * 40, id="40-digits"),
    pytest.param("1" * 100_000, id="100k-digits"),
    pytest.param("garbage\x00", id="nul"),
    pytest.param("5m\r\nx-evil: 1", id="header-injection"),
]


class TestGrpcTimeout:
    """gRPC's ``grpc-timeout`` value: parse strictly, format rounding down."""

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            ("1H", 3600.0),
            ("2M", 120.0),
            ("5S", 5.0),
            ("250m", 0.25),
            ("1500u", 0.0015),
            ("7n", 7e-9),
            ("0m", 0.0),
            ("99999999S", 99_999_999.0),
            (" 250m\t", 0.25),
        ],
    )
    def test_valid_values_parse(self, value: str, seconds: float) -> None:
        """Every unit of the format is read, with optional surrounding whitespace."""
        assert parse_grpc_timeout(value) == pytest.approx(seconds)

    @pytest.mark.parametrize("value", HOSTILE)
    def test_hostile_values_are_invalid(self, value: str) -> None:
        """Anything but 1–8 ASCII digits and a unit is invalid (None), never an exception."""
        assert parse_grpc_timeout(value) is None

    def test_a_number_without_unit_is_invalid(self) -> None:
        """The unit is mandatory: a bare number is not guessed to be anything."""
        assert parse_grpc_timeout("5") is None

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (0.05, "50000000n"),
            (0.25, "250000u"),
            (12.5, "12500000u"),
            (250.0, "250000m"),
            (10 * 86400.0, "864000S"),
            (-1.0, "0n"),
            (math.nan, "0n"),
            (math.inf, "99999999H"),
        ],
    )
    def test_format_picks_the_finest_unit_that_fits(self, seconds: float, text: str) -> None:
        """Formatting uses the finest unit whose count has at most 8 digits."""
        assert format_grpc_timeout(seconds) == text

    @given(st.floats(min_value=1e-9, max_value=1e7, allow_nan=False))
    def test_round_trip_never_extends(self, seconds: float) -> None:
        """A formatted budget reads back as at most the original, less than a unit below."""
        back = parse_grpc_timeout(format_grpc_timeout(seconds))
        assert back is not None
        assert back <= seconds * (1 + 1e-12)
        assert back >= seconds * (1 - 1e-5) - 1e-9  # 8 digits: a unit is at most 1e-5 of it


class TestMilliseconds:
    """The plain ``x-request-timeout-ms`` value."""

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [("250", 0.25), ("0", 0.0), ("12.5", 0.0125), ("0.001", 1e-6), ("999999999999", 1e9)],
    )
    def test_valid_values_parse(self, value: str, seconds: float) -> None:
        """Whole and fractional milliseconds are read."""
        assert parse_ms(value) == pytest.approx(seconds)

    @pytest.mark.parametrize("value", HOSTILE)
    def test_hostile_values_are_invalid(self, value: str) -> None:
        """Signs, exponents, nan/inf, lists, non-ASCII digits and huge values are invalid."""
        assert parse_ms(value) is None

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [(0.25, "250"), (0.0125, "12.5"), (0.0005, "0.5"), (0.2498739, "249.873"), (-1, "0")],
    )
    def test_format_rounds_down_to_microseconds(self, seconds: float, text: str) -> None:
        """Milliseconds with at most three decimals, never rounded up."""
        assert format_ms(seconds) == text

    @given(st.floats(min_value=1e-6, max_value=1e8, allow_nan=False))
    def test_round_trip_never_extends(self, seconds: float) -> None:
        """A formatted budget reads back as at most the original, within a microsecond."""
        back = parse_ms(format_ms(seconds))
        assert back is not None
        assert back <= seconds * (1 + 1e-12)
        assert back >= seconds - 2e-6 - seconds * 1e-12


def _h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode("latin-1", "replace")) for k, v in pairs]


class TestResolve:
    """Which budget a request gets from its headers and the configuration."""

    def test_smallest_valid_value_wins(self) -> None:
        """Several budget headers (both kinds, repeated) give their minimum."""
        headers = _h(
            ("grpc-timeout", "2S"),
            ("x-request-timeout-ms", "900"),
            ("grpc-timeout", "700m"),
            ("x-request-timeout-ms", "1500"),
        )
        arrival = resolve(InboundBudget(default=5), headers)
        assert (arrival.budget, arrival.source, arrival.invalid) == (0.7, "header", False)

    def test_invalid_values_are_skipped_beside_valid_ones(self) -> None:
        """An invalid value next to a valid one leaves the valid one in force."""
        headers = _h(("grpc-timeout", "-1m"), ("x-request-timeout-ms", "300"))
        arrival = resolve(InboundBudget(default=5), headers)
        assert (arrival.budget, arrival.source, arrival.invalid) == (0.3, "header", True)

    def test_only_invalid_values_fall_back_to_the_default(self) -> None:
        """When no value is usable, the default applies and the source says invalid."""
        arrival = resolve(InboundBudget(default=2), _h(("grpc-timeout", "nan")))
        assert (arrival.budget, arrival.source) == (2.0, "invalid")

    @pytest.mark.parametrize(
        ("config", "budget", "source"),
        [
            (InboundBudget(), None, "none"),
            (InboundBudget(default=1.5), 1.5, "default"),
            (InboundBudget(max_budget=3), 3.0, "none"),
            (InboundBudget(default=timedelta(milliseconds=200)), 0.2, "default"),
        ],
        ids=["nothing", "default", "cap-only", "timedelta"],
    )
    def test_absent_header(self, config: InboundBudget, budget: float | None, source: str) -> None:
        """Without a header: the default, else the cap, else no deadline."""
        arrival = resolve(config, _h(("content-type", "application/json")))
        assert (arrival.budget, arrival.source) == (budget, source)

    def test_max_budget_caps_huge_values(self) -> None:
        """A header asking for 99999999 hours gets max_budget."""
        arrival = resolve(InboundBudget(max_budget=10), _h(("grpc-timeout", "99999999H")))
        assert arrival.budget == 10.0

    def test_custom_header_names(self) -> None:
        """Configured names are read, the defaults then are not; None switches one off."""
        config = InboundBudget(grpc_header=None, ms_header="X-Envoy-Expected-Rq-Timeout-Ms")
        headers = _h(("grpc-timeout", "1m"), ("x-envoy-expected-rq-timeout-ms", "400"))
        assert resolve(config, headers).budget == 0.4

    def test_ten_thousand_headers(self) -> None:
        """Many headers (mostly junk) resolve to the smallest valid budget without error."""
        headers = _h(*[("grpc-timeout", f"{i}x") for i in range(5000)])
        headers += _h(*[("x-request-timeout-ms", str(1000 + i)) for i in range(5000)])
        assert resolve(InboundBudget(), headers).budget == 1.0


def _names_field_and_value(error: ValidationError, field: str, kwargs: dict[str, object]) -> None:
    given = kwargs[field.split(".")[1]]
    assert error.field == field
    assert field in str(error)
    assert error.value is given or error.value == given


class TestConfigValidation:
    """Bad configuration is a ValidationError naming the field and the value."""

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"default": 0}, "InboundBudget.default"),
            ({"default": -1}, "InboundBudget.default"),
            ({"default": math.nan}, "InboundBudget.default"),
            ({"default": True}, "InboundBudget.default"),
            ({"default": "1"}, "InboundBudget.default"),
            ({"max_budget": 0}, "InboundBudget.max_budget"),
            ({"default": 10**400}, "InboundBudget.default"),
            ({"max_budget": 10**400}, "InboundBudget.max_budget"),
            ({"default": 5, "max_budget": 1}, "InboundBudget.default"),
            ({"grpc_header": ""}, "InboundBudget.grpc_header"),
            ({"grpc_header": "bad header"}, "InboundBudget.grpc_header"),
            ({"ms_header": b"x"}, "InboundBudget.ms_header"),
            ({"ms_header": "Grpc-Timeout"}, "InboundBudget.ms_header"),
            ({"on_invalid": "drop"}, "InboundBudget.on_invalid"),
        ],
    )
    def test_inbound(self, kwargs: dict[str, object], field: str) -> None:
        """InboundBudget rejects bad durations, header names and modes."""
        with pytest.raises(ValidationError) as info:
            InboundBudget(**kwargs)  # type: ignore[arg-type]
        _names_field_and_value(info.value, field, kwargs)

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"margin": -0.001}, "OutboundBudget.margin"),
            ({"margin": math.inf}, "OutboundBudget.margin"),
            ({"margin": math.nan}, "OutboundBudget.margin"),
            ({"margin": "5ms"}, "OutboundBudget.margin"),
            ({"margin": 10**400}, "OutboundBudget.margin"),
            ({"grpc_header": "a:b"}, "OutboundBudget.grpc_header"),
            ({"cap_timeouts": 1}, "OutboundBudget.cap_timeouts"),
            ({"propagate_trace": None}, "OutboundBudget.propagate_trace"),
        ],
    )
    def test_outbound(self, kwargs: dict[str, object], field: str) -> None:
        """OutboundBudget rejects bad margins, header names and switches."""
        with pytest.raises(ValidationError) as info:
            OutboundBudget(**kwargs)  # type: ignore[arg-type]
        _names_field_and_value(info.value, field, kwargs)

    def test_values_are_normalised_and_comparable(self) -> None:
        """timedelta becomes seconds, header names lower case; equal configs compare equal."""
        made = OutboundBudget(margin=timedelta(milliseconds=20), ms_header="X-Budget-Ms")
        assert made == OutboundBudget(margin=0.02, ms_header="x-budget-ms")
        assert "x-budget-ms" in repr(made)
        with pytest.raises(AttributeError):
            made.margin = 1  # type: ignore[misc]
