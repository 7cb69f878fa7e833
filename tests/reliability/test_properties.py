"""Property tests over random flow trees, run on trio's MockClock (fast, deterministic).

Each example draws a random nesting of sequence / parallel / branch / loop with ``Delay``
and ``Request`` leaves (random durations, timeouts, failures, ``min_successes`` and
``max_concurrency``), runs it once with ``trio.run(..., clock=MockClock(autojump_threshold=0))``
and checks what must hold for every flow.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings

from stepwatch import CancelCause, Parallel, Status, StepFailedError
from tests.reliability._trees import (
    PROPERTY_SETTINGS,
    Builder,
    Probe,
    Run,
    Spec,
    ancestors,
    counted,
    flow_timeouts,
    run_on_mock_clock,
    specs,
    telemetry,
)

EPS = 1e-6  # virtual time: deadlines fire exactly


def run_tree(spec: Spec, flow_timeout: float | None, **executor_options: Any) -> Run[Probe]:
    """Build the flow, run it once on trio's mock clock, return what was observed."""
    run = run_on_mock_clock(spec, flow_timeout, Probe(), Builder(), **executor_options)
    assert run.result is not None, "an error without .result"
    return run


@given(spec=specs(), flow_timeout=flow_timeouts)
@PROPERTY_SETTINGS
def test_no_run_or_step_outlives_its_deadline(spec: Spec, flow_timeout: float | None) -> None:
    """Every execution ends by its effective deadline and the run by the flow's deadline."""
    run = run_tree(spec, flow_timeout)
    if flow_timeout is not None:
        assert run.elapsed <= flow_timeout + EPS
    for when, outcome, ctx in run.probe.own_records():
        assert when <= ctx.deadline + EPS, (outcome, ctx.deadline)
        # a retried step's budget is per attempt, and it may be cut off while it waits
        # between attempts
        retried = ctx.step is not None and ctx.step.retry_policy is not None
        single = outcome.attempts == 1 and not (retried and outcome.status is Status.CANCELLED)
        if single and outcome.timeout is not None and not math.isinf(outcome.timeout):
            assert outcome.elapsed <= outcome.timeout + EPS, outcome


@given(spec=specs(), flow_timeout=flow_timeouts)
@PROPERTY_SETTINGS
def test_every_started_step_ends_in_exactly_one_outcome(
    spec: Spec, flow_timeout: float | None
) -> None:
    """Each execution that started is recorded exactly once; the others were never started."""
    run = run_tree(spec, flow_timeout)
    started = Counter(id(ctx) for ctx in run.probe.started)
    assert set(started.values()) <= {1}
    finished = Counter(id(ctx) for _, _, ctx in run.probe.own_records())
    assert finished == started
    seen: dict[str, Status] = {}
    for _, outcome, ctx in run.probe.records:
        if ctx.step is None or ctx.step.name != outcome.name:  # recorded by a composite:
            if outcome.status is Status.FALLBACK:  # a cut-off child's fallback, replacing
                assert seen.get(outcome.name) is Status.CANCELLED, outcome  # its own record
            else:  # or a child that never started
                assert outcome.status is Status.CANCELLED and outcome.attempts == 0, outcome
        seen[outcome.name] = outcome.status
    names = {s.name for s in run.flow.walk()}
    assert set(run.result.outcomes) <= names
    for name, outcome in run.result.outcomes.items():  # the last record of each step
        last = [o for _, o, _ in run.probe.records if o.name == name][-1]
        assert outcome is last


@given(spec=specs(), flow_timeout=flow_timeouts)
@PROPERTY_SETTINGS
def test_outcome_causes_match_what_happened(spec: Spec, flow_timeout: float | None) -> None:
    """deadline only after a deadline passed, quorum_met only under min_successes,
    sibling_failure only after a failure, timed_out only at the step's own budget, never
    outside."""
    run = run_tree(spec, flow_timeout)
    failed_so_far = False
    for when, outcome, ctx in run.probe.records:
        own = ctx.step is not None and ctx.step.name == outcome.name
        enclosing = ancestors(ctx) if own else [ctx, *ancestors(ctx)]
        if outcome.status is Status.CANCELLED:
            cause = outcome.cause
            assert cause is not None and cause is not CancelCause.OUTSIDE, outcome
            if cause is CancelCause.DEADLINE:
                assert (ctx.deadline if own else enclosing[0].deadline) <= when + EPS, outcome
            elif cause is CancelCause.QUORUM_MET:
                assert any(
                    isinstance(c.step, Parallel) and c.step.min_successes is not None
                    for c in enclosing
                ), outcome
            elif cause is CancelCause.SIBLING_FAILURE:
                assert failed_so_far, outcome
        elif own:
            assert outcome.cause is None, outcome
        else:  # a fallback replacing a child cut off by the group's deadline
            assert outcome.status is Status.FALLBACK and outcome.cause is CancelCause.DEADLINE
            assert enclosing[0].deadline <= when + EPS, outcome
        if outcome.status is Status.TIMED_OUT:
            assert outcome.timeout is not None and outcome.elapsed >= outcome.timeout - EPS
        if outcome.status in (Status.FAILED, Status.TIMED_OUT):
            failed_so_far = True


@given(spec=specs(), flow_timeout=flow_timeouts)
@PROPERTY_SETTINGS
def test_no_task_is_alive_after_run_returns(spec: Spec, flow_timeout: float | None) -> None:
    """Every handler task has exited (its finally ran) by the time run() returns or raises."""
    run = run_tree(spec, flow_timeout)
    assert run.probe.live == 0
    assert not run.probe.records or run.probe.records[-1][1].step_type == "flow"


# -- with tracing and metrics ------------------------------------------------------------


def _telemetry_landed() -> str | None:
    """None if tracing and metrics record something, else why not (the stubs are in)."""
    provider, exporter, registry = telemetry()
    run = run_tree(
        ("request", None, 0.0, None, None, False),
        None,
        tracing=True,
        tracer_provider=provider,
        metrics=True,
        registry=registry,
    )
    del run
    if not exporter.get_finished_spans():
        return "the tracing decorator records no spans yet (telemetry/_tracing.py is a stub)"
    if (
        registry.get_sample_value(
            "stepwatch_step_duration_seconds_count",
            {"flow": "prop", "step": "s1", "step_type": "request", "outcome": "success"},
        )
        is None
    ):
        return "the metrics decorator records nothing yet (telemetry/_metrics.py is a stub)"
    return None


_NOT_LANDED = _telemetry_landed()


def _telemetry_outcome(outcome: Any) -> str:
    """The span/metric outcome of an Outcome: a fallback after a failure is a failure."""
    if outcome.status is Status.FALLBACK and isinstance(outcome.error, StepFailedError):
        return "failure"
    return str(outcome.status.telemetry)


@pytest.mark.skipif(_NOT_LANDED is not None, reason=str(_NOT_LANDED))
@given(spec=specs(), flow_timeout=flow_timeouts)
@settings(PROPERTY_SETTINGS, max_examples=150)
def test_telemetry_matches_the_outcomes(spec: Spec, flow_timeout: float | None) -> None:
    """One ended span per execution with its outcome, and timeouts counted == timeout outcomes."""
    provider, exporter, registry = telemetry()
    run = run_tree(
        spec, flow_timeout, tracing=True, tracer_provider=provider, metrics=True, registry=registry
    )
    spans = exporter.get_finished_spans()
    assert len(spans) == len(run.probe.started)
    assert all(span.end_time is not None for span in spans)
    by_span = Counter(
        (span.attributes["stepwatch.step.name"], span.attributes["stepwatch.step.outcome"])
        for span in spans
    )
    by_outcome = Counter((o.name, _telemetry_outcome(o)) for _, o, _ in run.probe.own_records())
    assert by_span == by_outcome
    timeouts = sum(
        1
        for _, o, _ in run.probe.own_records()
        if _telemetry_outcome(o) == "timeout" and o.step_type != "flow"
    )
    assert counted(registry, "stepwatch_step_timeouts_total") == timeouts
    provider.shutdown()
