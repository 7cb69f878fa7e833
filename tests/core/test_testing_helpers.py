"""The stepwatch.testing helpers behave as documented."""

from __future__ import annotations

import pytest

from stepwatch import CancelCause, Flow, FlowExecutor, Parallel, Request, Status
from stepwatch.testing import OutcomeRecorder, failing, sleeping

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


async def test_recorder_sleeping_and_failing() -> None:
    """The recorder sees each outcome; sleeping and failing handlers do what they say."""
    recorder = OutcomeRecorder()
    ex = FlowExecutor(
        handlers={"ok": sleeping(0.01, "v"), "slow": sleeping(10), "boom": failing(OSError("x"))},
        hooks=[recorder],
    )
    flow = Flow(
        "f",
        Parallel(
            "p",
            [Request("a", "ok"), Request("b", "slow"), Request("c", "boom", fallback=1)],
            timeout=0.1,
            fail_fast=False,
            on_timeout="partial",
        ),
    )
    with pytest.raises(Exception, match="OSError"):
        await ex.run(flow)
    assert recorder["a"].value == "v"
    assert recorder["b"].cause is CancelCause.DEADLINE
    assert recorder.with_status(Status.FAILED) == ["c", "p", "f"]
    with pytest.raises(KeyError, match="'zzz'"):
        recorder["zzz"]
