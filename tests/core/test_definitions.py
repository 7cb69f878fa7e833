"""Bad definitions are clear errors at definition time (or before anything runs)."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from typing import Any, ClassVar

import pytest

from stepwatch import (
    Branch,
    Delay,
    Flow,
    FlowExecutor,
    Loop,
    Parallel,
    Request,
    Sequence,
    Step,
    Transform,
    ValidationError,
)

pytestmark = pytest.mark.anyio


class TestDuplicateNames:
    def test_duplicate_in_flow(self) -> None:
        """Two top-level steps with one name are rejected, naming both."""
        with pytest.raises(ValidationError, match=r"duplicate step name 'a'.*Request.*Transform"):
            Flow("f", [Request("a", "h"), Transform("a", lambda c: 1)])

    def test_duplicate_across_nesting(self) -> None:
        """A name reused deep inside the tree is a duplicate too."""
        with pytest.raises(ValidationError, match=r"duplicate step name 'x'"):
            Flow("f", [Request("x", "h"), Sequence("s", [Parallel("p", [Request("x", "h")])])])

    def test_duplicate_inside_a_parallel(self) -> None:
        """A parallel with two children of one name is rejected when defined."""
        with pytest.raises(ValidationError, match=r"Parallel\('p'\): duplicate step name 'c'"):
            Parallel("p", [Request("c", "h"), Request("c", "h")])

    def test_same_step_object_twice(self) -> None:
        """Reusing one step object twice in a flow is rejected with a hint."""
        step = Request("a", "h")
        with pytest.raises(ValidationError, match="appears twice"):
            Flow("f", [step, Sequence("s", [step])])


class TestBadSteps:
    @pytest.mark.parametrize(
        ("make", "message"),
        [
            (lambda: Request("", "h"), r"Request.name must be a non-empty string; got ''"),
            (lambda: Request("r", ""), r"Request\('r'\).method must be a non-empty"),
            (lambda: Transform("t", 42), r"Transform\('t'\).fn must be callable; got 42"),
            (lambda: Branch("b", lambda c: True, "nope"), r"Branch\('b'\).then must be a"),
            (lambda: Loop("l", Delay("d", 0)), r"Loop\('l'\) needs times= or condition="),
            (lambda: Loop("l", Delay("d", 0), times=-1), r"times must be an int >= 0; got -1"),
            (lambda: Parallel("p", "abc"), r"Parallel\('p'\).steps must be a step or a list"),
            (lambda: Parallel("p", [Delay("d", 0)], on_timeout="ignore"), r"'ignore'"),
            (lambda: Parallel("p", [Delay("d", 0)], max_concurrency=0), r"max_concurrency.*0"),
            (lambda: Parallel("p", [Delay("d", 0)], min_successes=2), r"exceeds its 1 children"),
            (lambda: Parallel("p", [Delay("d", 0)], fail_fast="yes"), r"fail_fast must be a bool"),
            (lambda: Delay("d", -1), r"Delay\('d'\).seconds must be a number >= 0; got -1"),
            (lambda: Flow("f", []), r"Flow\('f'\) has no steps"),
            (lambda: Flow("f", ["step"]), r"Flow\('f'\).steps\[0\] must be a stepwatch Step"),
            (lambda: Flow("", [Delay("d", 0)]), r"Flow.name must be a non-empty string"),
        ],
    )
    def test_bad_definition_rejected(self, make: Any, message: str) -> None:
        """Each bad definition raises a ValidationError naming the field and value."""
        with pytest.raises(ValidationError, match=message):
            make()

    @pytest.mark.parametrize(
        ("make", "field"),
        [
            (lambda name: Request(name, "h"), "Request.name"),
            (lambda name: Parallel(name, [Delay("d", 0)]), "Parallel.name"),
            (lambda name: Flow(name, [Delay("d", 0)]), "Flow.name"),
        ],
        ids=["request", "parallel", "flow"],
    )
    def test_name_that_utf8_cannot_encode_is_rejected(self, make: Any, field: str) -> None:
        """A name with a lone surrogate (it would break every scrape) is a ValidationError."""
        name = json.loads('"user\\ud800"')
        with pytest.raises(ValidationError, match=r"UTF-8 .*telemetry.*'user\\ud800'") as info:
            make(name)
        assert (info.value.field, info.value.value) == (field, name)
        assert make("café ✓").name == "café ✓"  # any other non-ASCII text is fine

    def test_steps_are_immutable(self) -> None:
        """Step definitions are frozen."""
        step = Request("a", "h")
        with pytest.raises(FrozenInstanceError):
            step.method = "other"  # type: ignore[misc]


class TestExecutorChecks:
    async def test_unknown_handler_method(self) -> None:
        """A request whose method has no handler fails before anything runs, with a hint."""
        ran: list[str] = []
        ex = FlowExecutor(handlers={"inventory": lambda p: ran.append("x")})
        flow = Flow("f", [Request("a", "inventory"), Request("b", "inventroy")])
        with pytest.raises(ValidationError) as info:
            await ex.run(flow)
        message = str(info.value)
        assert "'inventroy'" in message and "Request('b')" in message
        assert "did you mean 'inventory'" in message
        assert ran == []

    def test_validate_checks_without_running(self) -> None:
        """FlowExecutor.validate() reports a missing handler up front."""
        with pytest.raises(ValidationError, match="no handler registered for method 'x'"):
            FlowExecutor().validate(Flow("f", Request("a", "x")))

    async def test_unknown_step_type(self) -> None:
        """A step type with no registered executor is a clear error naming the type."""

        class Custom(Step):
            type: ClassVar[str] = "custom"

        with pytest.raises(
            ValidationError, match=r"no executor is registered for step type 'custom'"
        ):
            await FlowExecutor().run(Flow("f", Custom("c")))

    def test_handler_must_be_callable(self) -> None:
        """A non-callable handler is rejected when the executor is built."""
        with pytest.raises(ValidationError, match=r"handler 'h' must be callable; got 3"):
            FlowExecutor(handlers={"h": 3})  # type: ignore[dict-item]

    async def test_run_needs_a_flow(self) -> None:
        """run() with something else than a Flow says so."""
        with pytest.raises(ValidationError, match=r"run\(\) needs a stepwatch\.Flow"):
            await FlowExecutor().run(Request("a", "h"))  # type: ignore[arg-type]
