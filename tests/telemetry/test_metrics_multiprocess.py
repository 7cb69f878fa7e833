"""Multiprocess mode (PROMETHEUS_MULTIPROC_DIR, as under gunicorn): processes aggregate."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

WORKER = textwrap.dedent(
    """
    import anyio
    from opentelemetry.sdk.trace import TracerProvider

    from stepwatch import Flow, FlowExecutor, Parallel, Request, StepTimeoutError
    from stepwatch.telemetry._registry import multiprocess_mode

    async def fast(params):
        await anyio.sleep(0.01)
        return "fast"

    async def slow(params):
        await anyio.sleep(10)

    async def main():
        provider = TracerProvider()  # a recording span: exemplars must be skipped cleanly
        ex = FlowExecutor(
            handlers={"fast": fast, "slow": slow}, tracer_provider=provider, logging=False
        )
        flow = Flow(
            "checkout",
            [Parallel("enrich", [Request("fast", "fast"), Request("slow", "slow")], timeout=0.1)],
        )
        with provider.get_tracer("worker").start_as_current_span("request"):
            try:
                await ex.run(flow)
            except StepTimeoutError:
                pass
            else:
                raise AssertionError("expected a timeout")

    assert multiprocess_mode()
    anyio.run(main)
    print("ok")
    """
)


def test_two_processes_aggregate(tmp_path: Path) -> None:
    """Two worker processes' samples add up through MultiProcessCollector; gauges live-sum."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-W", "error", str(script)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    pids = set()
    for proc in procs:
        out, err = proc.communicate(timeout=40)
        assert (proc.returncode, out.strip()) == (0, "ok"), err
        pids.add(proc.pid)
    assert {p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("*.db")} == {
        f"{pid}.db" for pid in pids
    }
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    par = {"flow": "checkout", "step": "enrich", "step_type": "parallel"}
    get = registry.get_sample_value
    assert get("stepwatch_step_duration_seconds_count", {**par, "outcome": "timeout"}) == 2
    assert get("stepwatch_step_timeouts_total", par) == 2
    assert (
        get(
            "stepwatch_parallel_children_cancelled_total",
            {"flow": "checkout", "step": "enrich", "cause": "deadline"},
        )
        == 2
    )
    fast = {"flow": "checkout", "step": "fast", "step_type": "request", "outcome": "success"}
    assert get("stepwatch_step_duration_seconds_count", fast) == 2
    for step_type in ("parallel", "request"):
        labels = {"flow": "checkout", "step_type": step_type}
        assert get("stepwatch_steps_in_progress", labels) == 0
