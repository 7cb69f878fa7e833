"""Nothing a run touched is kept alive after its flow and executor are gone."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import anyio

from stepwatch import Branch, Flow, FlowExecutor, Request, StepContext, Transform

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
