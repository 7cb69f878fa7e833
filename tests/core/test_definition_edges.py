"""Definitions at their edges: huge numbers, deep trees, wrong option types, empty
composites and long loops get a decided, documented answer (never a late surprise)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from stepwatch import (
    MAX_DEPTH,
    Delay,
    Flow,
    FlowExecutor,
    Loop,
    Parallel,
    Request,
    Retry,
    Sequence,
    Step,
    StepFailedError,
    Transform,
    ValidationError,
)
from stepwatch.telemetry import MetricsConfig
from stepwatch.testing import OutcomeRecorder, failing

from .helpers import quiet

HUGE = 10**400


class TestHugeNumbers:
    def test_retry_delay_never_overflows(self) -> None:
        """Retry(attempts=2000) computes its 1 999th backoff as the cap, not an OverflowError."""
        policy = Retry(attempts=2000, initial=0.1, multiplier=2, max_delay=5, jitter=False)
        assert policy.delay(1025) == 5.0
        assert policy.delay(1999) == 5.0
        assert policy.delay(1) == 0.1

    @pytest.mark.anyio
    @pytest.mark.virtual_time
    async def test_many_retries_end_with_the_real_error(self) -> None:
        """A step retried 2000 times fails with its own error, not an OverflowError."""
        retry = Retry(attempts=2000, initial=0.0, max_delay=0.0, jitter=False)
        flow = Flow("f", Request("r", "boom", retry=retry))
        ex = FlowExecutor(
            handlers={"boom": failing(ConnectionError("down"))},
            tracing=False,
            metrics=False,
            logging=False,
        )
        with pytest.raises(StepFailedError) as info:
            await ex.run(flow)
        assert isinstance(info.value.__cause__, ConnectionError)
        assert info.value.attempts == 2000

    @pytest.mark.parametrize(
        ("make", "field"),
        [
            (lambda: Request("r", "m", timeout=HUGE), "timeout"),
            (lambda: Delay("d", HUGE), "seconds"),
            (lambda: Flow("f", Delay("d", 0), timeout=HUGE), "timeout"),
            (lambda: MetricsConfig(duration_buckets=[1, HUGE]), "duration_buckets"),
            (lambda: Retry(initial=HUGE), "initial"),
        ],
        ids=["timeout", "delay", "flow-timeout", "buckets", "retry-initial"],
    )
    def test_integers_too_big_for_a_float_are_validation_errors(
        self, make: Any, field: str
    ) -> None:
        """An int too large for a float is a ValidationError naming the field."""
        with pytest.raises(ValidationError) as info:
            make()
        assert field in str(info.value.field)
        assert "too large" in str(info.value)


def nest(depth: int) -> Step:
    step: Step = Request("leaf", "m")
    for i in range(depth - 1):
        step = Sequence(f"s{i}", [step])
    return step


class TestDepth:
    def test_deeper_than_the_limit_is_rejected_at_definition(self) -> None:
        """A tree deeper than MAX_DEPTH is a ValidationError when the Flow is made."""
        with pytest.raises(ValidationError) as info:
            Flow("f", nest(MAX_DEPTH + 1))
        assert str(MAX_DEPTH) in str(info.value)
        assert info.value.field == "Flow.steps"

    # coverage's tracer costs stack depth (traced calls are not inlined): with it, a tree
    # at the limit with every decorator reaches Python's recursion limit
    @pytest.mark.no_cover
    @pytest.mark.anyio
    async def test_the_limit_itself_runs_with_every_decorator(self) -> None:
        """A tree exactly MAX_DEPTH deep runs with tracing, metrics, logging and hooks on."""
        TracerProvider = pytest.importorskip("opentelemetry.sdk.trace").TracerProvider
        from prometheus_client import CollectorRegistry

        async def leaf(params: Any) -> str:
            return "deep"

        recorder = OutcomeRecorder()
        ex = FlowExecutor(
            handlers={"m": leaf},
            tracer_provider=TracerProvider(),
            registry=CollectorRegistry(),
            hooks=[recorder],
        )
        result = await ex.run(Flow("f", nest(MAX_DEPTH)))
        assert result["leaf"] == "deep"
        assert len(recorder.outcomes) == MAX_DEPTH + 1  # and the flow's own


class TestOptionTypes:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"tracing": "off"}, "tracing"),
            ({"tracing": 0}, "tracing"),
            ({"metrics": None}, "metrics"),
            ({"metrics": "yes"}, "metrics"),
            ({"logging": "no"}, "logging"),
            ({"decorators": [1]}, "decorators"),
            ({"hooks": [1]}, "hooks"),
            ({"hooks": [object()]}, "hooks"),
        ],
        ids=lambda v: repr(v),
    )
    def test_executor_options_of_the_wrong_type_are_rejected(
        self, kwargs: dict[str, Any], field: str
    ) -> None:
        """FlowExecutor options of the wrong type raise ValidationError naming the option."""
        with pytest.raises(ValidationError) as info:
            FlowExecutor(**kwargs)
        assert str(info.value.field).startswith(f"FlowExecutor.{field}")
        assert field in str(info.value)

    def test_transform_inline_must_be_a_bool(self) -> None:
        """Transform(inline="no") is rejected: it would have meant True."""
        with pytest.raises(ValidationError) as info:
            Transform("t", lambda ctx: 1, inline="no")  # type: ignore[arg-type]
        assert info.value.field == "t.inline"


class TestEmptyAndLong:
    @pytest.mark.anyio
    @pytest.mark.parametrize("make", [Parallel, Sequence], ids=["parallel", "sequence"])
    async def test_empty_composite_succeeds_with_an_empty_dict(self, make: Any) -> None:
        """An empty Parallel / Sequence (a fan-out over nothing) succeeds with {}."""
        flow = Flow("f", make("empty", []))
        result = await quiet().run(flow)
        assert result["empty"] == {}

    @pytest.mark.anyio
    async def test_loop_times_is_not_capped(self) -> None:
        """Loop(times=20 000) runs 20 000 iterations: times is never silently capped."""
        flow = Flow("f", Loop("loop", Transform("t", lambda ctx: 1, inline=True), times=20_000))
        result = await quiet().run(flow)
        assert len(result["loop"]) == 20_000

    def test_times_above_max_iterations_is_rejected(self) -> None:
        """Loop(times=20, max_iterations=10) contradicts itself: ValidationError."""
        body = Transform("t", lambda ctx: 1, inline=True)
        with pytest.raises(ValidationError) as info:
            Loop("loop", body, times=20, max_iterations=10)
        assert info.value.field == "loop.max_iterations"

    def test_condition_loop_keeps_a_safety_cap(self) -> None:
        """A condition-only loop keeps a default max_iterations of 10 000."""
        loop = Loop("loop", Transform("t", lambda ctx: 1, inline=True), condition=lambda c: True)
        assert loop.iteration_limit == 10_000
        assert Loop("l2", Transform("t2", lambda c: 1), times=50_000).iteration_limit == 50_000
        assert not math.isinf(loop.iteration_limit)
