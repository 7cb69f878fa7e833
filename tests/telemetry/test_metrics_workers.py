"""The abandoned-workers gauge follows worker threads abandoned at a deadline (real time)."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from stepwatch import Flow, FlowExecutor, Request, StepTimeoutError

pytestmark = pytest.mark.anyio

GAUGE = "stepwatch_abandoned_workers"


async def test_abandoned_worker_gauge_goes_up_and_back_down() -> None:
    """A sync handler abandoned at its deadline counts 1 until its thread finishes, then 0."""
    release = threading.Event()

    def blocking(params: Any) -> str:
        release.wait(10)
        time.sleep(0.01)
        return "late"

    registry = CollectorRegistry()
    ex = FlowExecutor(handlers={"block": blocking}, registry=registry, tracing=False)
    flow = Flow("legacy", [Request("call", "block", timeout=0.05)])
    labels = {"flow": "legacy", "step_type": "request"}
    try:
        with pytest.raises(StepTimeoutError):
            await ex.run(flow)
        assert registry.get_sample_value(GAUGE, labels) == 1
        assert ex.workers.abandoned == 1
    finally:
        release.set()
    with anyio.fail_after(5):
        while ex.workers.abandoned:
            await anyio.sleep(0.01)
    assert registry.get_sample_value(GAUGE, labels) == 0
    assert registry.get_sample_value("stepwatch_steps_in_progress", labels) == 0
