"""examples/deadlines/run.py does what its README shows (four real service processes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_budget_shrinks_services_stop_and_one_trace() -> None:
    """Budgets shrink hop by hop, every service is cut off on a timeout, and the trace
    holds spans of all five processes."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "deadlines" / "run.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = proc.stdout
    first, second, third = re.split(r"^\d\) ", out, flags=re.MULTILINE)[1:]
    budgets = {
        m[1]: float(m[2]) for m in re.finditer(r"(\w+)\s+budget on arrival\s+([\d.]+)", first)
    }
    assert budgets["gateway"] <= 490.0
    assert (
        budgets["inventory"] < budgets["gateway"] - 15
        and budgets["pricing"] < budgets["gateway"] - 15
    )
    assert budgets["fx"] < budgets["pricing"] - 25  # pricing's 15 ms of work + the margin
    assert "answer: {'stock': 7, 'base': 18.0, 'rate': 1.1}" in first
    assert "edge: StepTimeoutError" in second
    cut = re.findall(r"(\w+)\s+cut off at its deadline after (\d+) ms", second)
    assert sorted(name for name, _ in cut) == ["fx", "gateway", "pricing"]
    assert all(int(ms) <= 250 for _, ms in cut)
    assert "spans from edge, fx, gateway, inventory, pricing" in third
    assert proc.stderr.count("Traceback") == 0, proc.stderr
