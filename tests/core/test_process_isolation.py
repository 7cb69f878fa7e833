"""CPU-bound handlers in worker processes are killed at their deadline."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest

from stepwatch import (
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Status,
    StepTimeoutError,
    ValidationError,
    in_worker_process,
)

from .cpu_work import spin, write_pid_then_spin

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child not yet reaped is a zombie: count it as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_worker_process_killed_at_deadline(tmp_path: Path) -> None:
    """A spinning handler in a worker process ends at the deadline and its process dies."""
    pid_file = tmp_path / "pid"
    ex = FlowExecutor(
        handlers={"spin": in_worker_process(write_pid_then_spin)},
        tracing=False,
        metrics=False,
    )
    flow = Flow("f", Parallel("p", [Request("cpu", "spin", str(pid_file))], timeout=1.5))
    start = time.monotonic()
    with pytest.raises(StepTimeoutError) as info:
        await ex.run(flow)
    assert time.monotonic() - start < 5
    assert info.value.outcomes["cpu"].status is Status.CANCELLED
    pid = int(pid_file.read_text())
    with anyio.fail_after(5):
        while _alive(pid):
            await anyio.sleep(0.05)


async def test_worker_process_returns_values() -> None:
    """A handler that finishes in time returns its value from the worker process."""
    ex = FlowExecutor(handlers={"spin": in_worker_process(spin)}, tracing=False, metrics=False)
    result = await ex.run(Flow("f", Request("cpu", "spin", 0.01)))
    assert isinstance(result["cpu"], int) and result["cpu"] != os.getpid()


def test_rejects_async_and_non_callables() -> None:
    """in_worker_process() needs a sync callable."""

    async def coro(params: object) -> None: ...

    with pytest.raises(ValidationError, match="is async"):
        in_worker_process(coro)
    with pytest.raises(ValidationError, match="needs a callable"):
        in_worker_process(3)  # type: ignore[arg-type]
