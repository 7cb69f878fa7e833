"""Timeout values are validated at definition time and resolved in the documented order."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from stepwatch import (
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Sequence,
    TimeoutOptions,
    Transform,
    ValidationError,
)
from stepwatch.executors import BUILTIN_STEPS

BUILTIN_DEFAULTS = {step.type: step.default_timeout for step, _ in BUILTIN_STEPS}

BAD_VALUES = [
    pytest.param(0, id="zero"),
    pytest.param(0.0, id="zero-float"),
    pytest.param(-1, id="negative"),
    pytest.param(-0.5, id="negative-float"),
    pytest.param(math.nan, id="nan"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param("5", id="string"),
    pytest.param([1], id="list"),
    pytest.param(timedelta(seconds=-1), id="negative-timedelta"),
    pytest.param(timedelta(0), id="zero-timedelta"),
]

DEFINITIONS = {
    "step": lambda v: Request("inventory", "inv", timeout=v),
    "flow timeout": lambda v: Flow("f", Request("a", "inv"), timeout=v),
    "options default": lambda v: TimeoutOptions(v),
    "options per type": lambda v: TimeoutOptions(request=v),
    "options custom type": lambda v: TimeoutOptions(types={"mytype": v}),
    "executor": lambda v: FlowExecutor(timeouts=TimeoutOptions(parallel=v)),
}


class TestValidation:
    @pytest.mark.parametrize("value", BAD_VALUES)
    @pytest.mark.parametrize("where", list(DEFINITIONS))
    def test_bad_value_rejected_naming_field_and_value(self, where: str, value: Any) -> None:
        """Every bad timeout value is a ValidationError that names the field and the value."""
        with pytest.raises(ValidationError) as info:
            DEFINITIONS[where](value)
        message = str(info.value)
        assert "timeout" in message.lower() or "TimeoutOptions" in message
        shown = "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)
        assert shown in message
        assert info.value.value is value or (isinstance(value, float) and math.isnan(value))

    def test_step_error_names_the_step(self) -> None:
        """The message says which step's timeout is wrong."""
        with pytest.raises(ValidationError, match=r"Request\('inventory'\)\.timeout.*-2"):
            Request("inventory", "inv", timeout=-2)

    @pytest.mark.parametrize(
        ("given", "seconds"),
        [(1, 1.0), (0.25, 0.25), (timedelta(milliseconds=200), 0.2), (math.inf, math.inf)],
    )
    def test_good_values_normalised_to_seconds(self, given: Any, seconds: float) -> None:
        """Ints, floats, timedeltas and math.inf are accepted and stored as float seconds."""
        step = Request("a", "inv", timeout=given)
        assert step.timeout == seconds
        assert isinstance(step.timeout, float)

    def test_none_means_unset(self) -> None:
        """None is accepted everywhere and means 'not set at this level'."""
        assert Request("a", "inv", timeout=None).timeout is None
        assert TimeoutOptions().default is None

    def test_options_value_object(self) -> None:
        """TimeoutOptions has a readable repr and compares by value."""
        opts = TimeoutOptions(5, request=0.25)
        assert opts == TimeoutOptions(5.0, request=timedelta(milliseconds=250))
        assert opts != TimeoutOptions(5)
        assert repr(opts) == "TimeoutOptions(default=5.0, request=0.25)"
        assert hash(opts) == hash(TimeoutOptions(5, request=0.25))

    def test_flow_timeouts_accepts_a_number_as_default(self) -> None:
        """Flow(timeouts=2) is shorthand for TimeoutOptions(2)."""
        assert Flow("f", Request("a", "inv"), timeouts=2).timeouts == TimeoutOptions(2)

    def test_flow_timeouts_rejects_other_types(self) -> None:
        """Flow(timeouts=...) of the wrong type names the field and the value."""
        with pytest.raises(ValidationError, match=r"Flow\('f'\)\.timeouts.*'fast'"):
            Flow("f", Request("a", "inv"), timeouts="fast")  # type: ignore[arg-type]


def _resolved(flow: Flow, executor: FlowExecutor, step_name: str) -> float | None:
    plan = executor._plan(flow)
    step = next(s for s in flow.walk() if s.name == step_name)
    return plan.entries[id(step)][1]


class TestResolution:
    """First set wins: step → flow per type → flow default → executor per type →
    executor default → built-in."""

    def _flow(self, step_timeout: Any = None, flow_opts: Any = None) -> Flow:
        return Flow("f", Request("r", "h", timeout=step_timeout), timeouts=flow_opts)

    @pytest.mark.parametrize(
        ("step_t", "flow_opts", "exec_opts", "expected"),
        [
            pytest.param(
                1, TimeoutOptions(2, request=3), TimeoutOptions(4, request=5), 1, id="step-own"
            ),
            pytest.param(
                None,
                TimeoutOptions(2, request=3),
                TimeoutOptions(4, request=5),
                3,
                id="flow-per-type",
            ),
            pytest.param(
                None, TimeoutOptions(2), TimeoutOptions(4, request=5), 2, id="flow-default"
            ),
            pytest.param(None, None, TimeoutOptions(4, request=5), 5, id="executor-per-type"),
            pytest.param(
                None, TimeoutOptions(transform=9), TimeoutOptions(4), 4, id="executor-default"
            ),
            pytest.param(None, None, None, 30, id="built-in"),
        ],
    )
    def test_each_level_wins_in_turn(
        self, step_t: Any, flow_opts: Any, exec_opts: Any, expected: float
    ) -> None:
        """The first level that sets a value decides the step's budget."""
        executor = FlowExecutor(handlers={"h": lambda p: p}, timeouts=exec_opts)
        assert _resolved(self._flow(step_t, flow_opts), executor, "r") == expected

    def test_inf_stops_the_search(self) -> None:
        """math.inf at a level means 'no limit' even if a lower level sets one."""
        executor = FlowExecutor(handlers={"h": lambda p: p}, timeouts=TimeoutOptions(4))
        assert _resolved(self._flow(math.inf), executor, "r") is None
        flow = self._flow(None, TimeoutOptions(request=math.inf))
        assert _resolved(flow, executor, "r") is None

    def test_flow_deadline_is_not_a_step_default(self) -> None:
        """Flow(timeout=...) bounds the run but is never used as a per-step default."""
        executor = FlowExecutor(handlers={"h": lambda p: p})
        flow = Flow("f", Request("r", "h"), timeout=1)
        assert _resolved(flow, executor, "r") == 30

    @pytest.mark.parametrize(("step_type", "expected"), list(BUILTIN_DEFAULTS.items()))
    def test_built_in_defaults(self, step_type: str, expected: float | None) -> None:
        """Built-in defaults: request 30, transform 10, branch 5, loop 60, composites none."""
        assert BUILTIN_DEFAULTS[step_type] == expected
        assert dict(BUILTIN_DEFAULTS) == {
            "request": 30.0,
            "transform": 10.0,
            "branch": 5.0,
            "loop": 60.0,
            "sequence": None,
            "parallel": None,
            "delay": None,
            "flow": None,
        }

    def test_per_type_applies_to_composites_too(self) -> None:
        """A flow's per-type option reaches nested composite steps."""
        executor = FlowExecutor(handlers={"h": lambda p: p})
        flow = Flow(
            "f",
            Sequence("s", [Parallel("p", [Transform("t", lambda c: 1)])]),
            timeouts=TimeoutOptions(parallel=0.5, transform=0.1),
        )
        assert _resolved(flow, executor, "s") is None
        assert _resolved(flow, executor, "p") == 0.5
        assert _resolved(flow, executor, "t") == 0.1
