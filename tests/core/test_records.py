"""The outcomes and step records the core builds on its fast path are ordinary, frozen values."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from stepwatch import (
    CancelCause,
    Flow,
    FlowExecutor,
    Outcome,
    Parallel,
    Request,
    Status,
    StepEnded,
)
from stepwatch._outcome import new_outcome
from stepwatch._record import new_record

OUTCOME_ARGS: tuple[Any, ...] = (
    "s",
    "request",
    Status.CANCELLED,
    None,
    None,
    0.25,
    2,
    CancelCause.DEADLINE,
    1.5,
    False,
    0.01,
)


class TestFastConstruction:
    def test_new_outcome_equals_the_constructor(self) -> None:
        """new_outcome(...) gives an Outcome equal to Outcome(...), of the same type."""
        fast, slow = new_outcome(*OUTCOME_ARGS), Outcome(*OUTCOME_ARGS)
        assert type(fast) is Outcome
        assert fast == slow and hash(fast) == hash(slow)
        assert dataclasses.astuple(fast) == dataclasses.astuple(slow)
        assert repr(fast) == repr(slow)

    def test_a_fast_outcome_is_frozen(self) -> None:
        """Assigning or deleting a field of a fast-built outcome raises, as for any other."""
        fast = new_outcome(*OUTCOME_ARGS)
        with pytest.raises(FrozenInstanceError):
            fast.status = Status.SUCCEEDED  # type: ignore[misc]
        with pytest.raises(FrozenInstanceError):
            del fast.value  # type: ignore[misc]
        assert fast.status is Status.CANCELLED

    def test_a_fast_outcome_copies_pickles_and_replaces(self) -> None:
        """copy, pickle and dataclasses.replace treat it as an Outcome."""
        fast = new_outcome(*OUTCOME_ARGS)
        assert copy.copy(fast) == fast and copy.deepcopy(fast) == fast
        assert pickle.loads(pickle.dumps(fast)) == fast
        replaced = dataclasses.replace(fast, attempts=3)
        assert type(replaced) is Outcome and replaced.attempts == 3

    def test_new_record_equals_the_constructor(self) -> None:
        """new_record(...) gives a frozen StepEnded with the fields of StepEnded(...)."""
        outcome = Outcome(*OUTCOME_ARGS)
        step = Request("s", "h")
        args: tuple[Any, ...] = (
            step,
            None,
            outcome,
            3.0,
            None,
            None,
            False,
            None,
            False,
            (),
            None,
            None,
        )
        fast, slow = new_record(*args), StepEnded(*args)
        assert type(fast) is StepEnded
        names = [f.name for f in dataclasses.fields(StepEnded)]
        assert [getattr(fast, n) for n in names] == [getattr(slow, n) for n in names]
        assert repr(fast) == repr(slow)
        with pytest.raises(FrozenInstanceError):
            fast.ended = 4.0  # type: ignore[misc]


class _Keep:
    def __init__(self) -> None:
        self.records: list[StepEnded] = []

    def step_finished(self, record: StepEnded) -> None:
        self.records.append(record)


@pytest.mark.anyio
async def test_what_a_run_hands_out_is_frozen() -> None:
    """The outcomes of a result and the records hooks get cannot be changed."""
    keep = _Keep()

    async def ok(params: Any) -> Any:
        return params

    flow = Flow("f", Parallel("p", [Request("a", "h", params=1), Request("b", "h", params=2)]))
    result = await FlowExecutor(handlers={"h": ok}, hooks=[keep], metrics=False).run(flow)
    assert type(result.outcomes["a"]) is Outcome and result["p"] == {"a": 1, "b": 2}
    with pytest.raises(FrozenInstanceError):
        result.outcomes["a"].value = 5  # type: ignore[misc]
    assert {r.step.name for r in keep.records} == {"f", "p", "a", "b"}
    for record in keep.records:
        assert type(record) is StepEnded
        with pytest.raises(FrozenInstanceError):
            record.budget_ratio = 0.0  # type: ignore[misc]
