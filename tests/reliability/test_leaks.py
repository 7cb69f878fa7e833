"""Nothing a run touched is kept alive after its flow and executor are gone."""

from __future__ import annotations

import gc
import weakref
from collections import Counter
from typing import Any

import anyio
import pytest

from stepwatch import (
    Branch,
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    StepContext,
    StepTimeoutError,
    Transform,
)
from stepwatch.testing import sleeping

OFF: dict[str, Any] = {"tracing": False, "metrics": False, "logging": False}


class _Service:
    """A handler object with state, as applications register them (bound methods)."""

    def __init__(self) -> None:
        self.payload = bytearray(1024)

    async def fetch(self, params: Any) -> Any:
        return params

    def lookup(self, params: Any) -> Any:
        return params


def test_handlers_and_step_callables_are_released_with_their_flow_and_executor() -> None:
    """Handlers (bound methods), params callables, conditions and transforms are not kept
    alive by any process-wide cache once their executor and flow are gone."""

    def build() -> tuple[list[weakref.ref[Any]], Any]:
        service = _Service()
        cut = 5

        def params(ctx: StepContext) -> int:
            return cut

        def condition(ctx: StepContext) -> bool:
            return cut > 1

        async def transform(ctx: StepContext) -> int:
            return cut * 2

        flow = Flow(
            "leak",
            [
                Request("a", "fetch", params),
                Request("b", "lookup", params),
                Branch("c", condition, Transform("d", transform)),
            ],
        )
        ex = FlowExecutor(handlers={"fetch": service.fetch, "lookup": service.lookup}, **OFF)
        refs = [weakref.ref(o) for o in (service, params, condition, transform, flow, ex)]
        return refs, anyio.run(ex.run, flow)

    refs, result = build()
    assert result["a"] == 5 and result["d"] == 10
    del result
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert alive == []


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_children_cut_off_at_a_deadline_leave_no_reference_cycles() -> None:
    """Children cancelled at their group's deadline are freed by reference counting: their
    tasks, frames and tracebacks are not left in cycles for a full garbage collection (which,
    with thousands of children, made the group late)."""
    n = 200
    children = [Request(f"c{i}", "sleep") for i in range(n)]
    flow = Flow("cut", Parallel("p", children, timeout=0.05))
    ex = FlowExecutor(handlers={"sleep": sleeping(10)}, **OFF)
    with pytest.raises(StepTimeoutError):  # warm-up: plans and caches
        await ex.run(flow)
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(flow)
        assert len(info.value.pending) == n
        del info
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    # the run's error and its result form one cycle per run (a few frames, two contexts);
    # before the fix each child left ≈ 11 frames, 10 tracebacks and its task in one
    for kind in ("frame", "traceback", "Task", "coroutine", "StepContext"):
        assert garbage[kind] < n // 10, garbage.most_common(12)
