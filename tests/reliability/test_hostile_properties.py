"""Property tests over random flow trees with hostile children, on trio's MockClock.

Leaves hold the event loop (before or after an await), swallow the cancellation, run sync
code in worker threads; parallel steps get ``max_concurrency`` below their child count;
callers cancel before or during the run. After every run:

* every started execution has exactly one outcome, and every child of every parallel
  step that started has one (never-started children: ``cancelled``, ``attempts == 0``);
* no step ends after its deadline by more than the time handlers held the loop, and if
  any step ends late, a step that overran its deadline is named (``Outcome.overrun``);
* a caller's cancellation propagates and no handler runs for a caller that gave up;
* no handler task outlives the run, no worker thread outlives its call for long, and the
  thread budget is never exceeded;
* with tracing and metrics on: one span per execution with its outcome, timeouts counted
  equal timeout outcomes, overrun seconds counted equal the overruns recorded.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepwatch import FlowExecutor, Outcome, Parallel, Status, StepContext
from tests.reliability._trees import (
    PROPERTY_SETTINGS,
    HostileBuilder,
    HostileProbe,
    Run,
    Spec,
    counted,
    hostile_specs,
    run_on_mock_clock,
    telemetry,
)

EPS = 1e-6
MAX_THREADS = 3

flow_timeouts = st.sampled_from((None, None, 0.08, 0.3, 1.0))
# the caller: no cancel, cancel before run(), or cancel at a virtual time during it
callers = st.sampled_from((None, None, None, "before", 0.01, 0.05, 0.2))


def run_hostile(
    spec: Spec, flow_timeout: float | None, caller: Any, **options: Any
) -> Run[HostileProbe]:
    """Run a tree with the hostile leaves and at most ``MAX_THREADS`` worker threads."""
    return run_on_mock_clock(
        spec,
        flow_timeout,
        HostileProbe(),
        HostileBuilder(),
        caller,
        max_threads=MAX_THREADS,
        **options,
    )


def wait_for_threads(executor: FlowExecutor) -> None:
    deadline = time.monotonic() + 5
    while executor.workers.running and time.monotonic() < deadline:
        time.sleep(0.005)


def children_outcomes(run: Run[HostileProbe], ctx: StepContext) -> dict[str, list[Outcome]]:
    """What was recorded for the children of the parallel execution ``ctx``: their own
    records, and the records ``ctx`` made for them (never started, fallback)."""
    assert ctx.step is not None
    found: dict[str, list[Outcome]] = {}
    for _, outcome, rec in run.probe.records:
        own_child = rec.parent is ctx and rec.step is not None and rec.step.name == outcome.name
        made_by_ctx = rec is ctx and outcome.name != ctx.step.name
        if own_child or made_by_ctx:
            found.setdefault(outcome.name, []).append(outcome)
    return found


@given(spec=hostile_specs(), flow_timeout=flow_timeouts, caller=callers)
@PROPERTY_SETTINGS
def test_hostile_children_never_break_the_guarantees(
    spec: Spec, flow_timeout: float | None, caller: Any
) -> None:
    """Outcomes, deadlines, caller cancellation, tasks and threads hold with hostile leaves."""
    run = run_hostile(spec, flow_timeout, caller)
    probe = run.probe
    try:
        # the caller who gave up before run(): nothing ran, the cancellation propagated
        if caller == "before":
            assert run.cancelled and probe.entered == 0 and probe.records == []
            return
        if run.cancelled:  # the caller cancelled during the run: it propagated, no result
            assert run.result is None and run.error is None
            assert isinstance(caller, float) and run.elapsed >= caller - EPS
            assert run.elapsed <= caller + probe.held + EPS
        elif run.cancelled_at is not None and run.elapsed > run.cancelled_at + EPS:
            # the cancel came while run() was still running: run() may fail (an error it
            # met first) but never return normally
            assert run.error is not None, run.result
        # exactly one outcome per started execution
        started = Counter(id(ctx) for ctx in probe.started)
        assert set(started.values()) <= {1}
        assert Counter(id(c) for _, _, c in probe.own_records()) == started
        # every child of every started parallel has one outcome
        for ctx in probe.started:
            if not isinstance(ctx.step, Parallel):
                continue
            recorded = children_outcomes(run, ctx)
            if not run.cancelled:
                assert set(recorded) == {c.name for c in ctx.step.steps}, recorded
            for name, outcomes in recorded.items():
                statuses = [o.status for o in outcomes]
                assert statuses in ([s] for s in Status) or statuses == [
                    Status.CANCELLED,
                    Status.FALLBACK,
                ], (name, statuses)
                if outcomes[0].attempts == 0:
                    assert outcomes[0].status is Status.CANCELLED, outcomes
        # deadlines: late only by what handlers held the loop
        for when, outcome, ctx in probe.own_records():
            assert when <= ctx.deadline + probe.held + EPS, (outcome, ctx.deadline)
            if outcome.overrun is not None:
                assert outcome.status in (Status.TIMED_OUT, Status.CANCELLED, Status.FALLBACK)
            # a handler whose value came after its deadline is named, never a success
            returned = probe.returned.get(id(ctx))
            if returned is not None and returned >= ctx.deadline + EPS:
                assert outcome.overrun is not None, outcome
                assert outcome.status is not Status.SUCCEEDED, outcome
            elif returned is not None and outcome.status is Status.SUCCEEDED:
                assert outcome.overrun is None, outcome
        if flow_timeout is not None and not run.cancelled:
            assert run.elapsed <= flow_timeout + probe.held + EPS
        # no task outlives the run; threads are bounded and come back
        assert probe.live == 0
        assert run.executor.workers.running <= MAX_THREADS
        assert run.executor.workers.threads <= MAX_THREADS
    finally:
        wait_for_threads(run.executor)
    assert run.executor.workers.abandoned == 0


@given(spec=hostile_specs(), flow_timeout=flow_timeouts)
@settings(PROPERTY_SETTINGS, max_examples=120)
def test_hostile_children_telemetry_matches_outcomes(
    spec: Spec, flow_timeout: float | None
) -> None:
    """Spans equal executions and their outcomes; timeouts and overrun seconds counted
    equal the outcomes recorded."""
    provider, exporter, registry = telemetry()
    run = run_hostile(
        spec,
        flow_timeout,
        None,
        tracing=True,
        tracer_provider=provider,
        metrics=True,
        registry=registry,
    )
    try:
        spans = exporter.get_finished_spans()
        assert len(spans) == len(run.probe.started)
        by_span = Counter(
            (s.attributes["stepwatch.step.name"], s.attributes["stepwatch.step.outcome"])
            for s in spans
        )
        own = [o for _, o, _ in run.probe.own_records()]
        assert by_span == Counter((o.name, o.status.telemetry) for o in own)
        steps = [o for o in own if o.step_type != "flow"]
        timeouts = sum(1 for o in steps if o.status.telemetry == "timeout")
        assert counted(registry, "stepwatch_step_timeouts_total") == timeouts
        overrun = sum(o.overrun or 0.0 for o in steps)
        assert counted(registry, "stepwatch_step_overrun_seconds_total") == pytest.approx(overrun)
        red = {
            s.attributes["stepwatch.step.name"]
            for s in spans
            if s.attributes.get("error.type") == "overrun"
        }
        assert red == {
            o.name for o in steps if o.overrun is not None and o.status is Status.CANCELLED
        }
    finally:
        provider.shutdown()
        wait_for_threads(run.executor)
