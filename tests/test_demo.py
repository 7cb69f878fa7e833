"""The README's demo command prints the timed-out fan-out as promised."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_partial_results_and_pending_children() -> None:
    """The demo shows a 200 ms group timeout, its partial results and the pending child."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = proc.stdout
    assert "StepTimeoutError after" in out
    assert "pending children: ['recommendations']" in out
    assert "still pending: recommendations" in out
    lines = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith("    ")
        and line.split()
        and line.split()[0] in ("inventory", "recommendations")
    }
    assert lines["inventory"][1] == "succeeded"
    assert lines["recommendations"][1:3] in (["cancelled", "deadline"], ["fallback", "deadline"])
    assert "'recommendations': []" in out
    timeouts = 'stepwatch_step_timeouts_total{flow="product-page-raise",step="enrich"'
    assert f'{timeouts},step_type="parallel"}} 1' in out  # the real series, as scraped
    assert "[warning" not in out and "step.timeout" not in out  # no library log lines
    assert proc.stderr == ""
