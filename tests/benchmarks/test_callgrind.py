"""Per-child instruction counts (callgrind) against the targets and the committed baseline.

Counts, not time: the same code executes the same instructions on a busy machine and a
quiet one (``benchmarks/callgrind.py`` explains how the counts are pinned). The counted
tests share one measurement, about a minute; they skip when valgrind is missing, except
under ``CI=true``, where they are mandatory, and on a Python minor version other than the
baseline's. Refresh the baseline after a deliberate change with
``.venv/bin/python -m benchmarks.callgrind --update-baseline``.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest

from benchmarks import callgrind
from tests.helpers import require_tool


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    return callgrind.load_baseline()


@pytest.fixture(scope="module")
def per_child(baseline: dict[str, Any]) -> dict[str, float]:
    recorded = str(baseline["versions"]["python"]).split(".")[:2]
    if recorded != [str(v) for v in sys.version_info[:2]]:
        pytest.skip(f"baseline recorded on Python {'.'.join(recorded)}; refresh it on this one")
    require_tool(
        callgrind.valgrind(),
        "valgrind not found (apt-get install valgrind)",
        what="the callgrind check",
    )
    return callgrind.measure()


def _scaled(baseline: dict[str, Any], variant: str, factor: float) -> dict[str, float]:
    """The baseline's per-child counts with one variant's count multiplied by ``factor``."""
    counts = {k: float(v) for k, v in baseline["per_child"].items()}
    counts[variant] *= factor
    return counts


class TestTheCheck:
    """What the check reports, on made-up counts (no valgrind)."""

    def test_the_baseline_itself_passes(self, baseline: dict[str, Any]) -> None:
        """The committed counts are within the margin of the committed ratios."""
        assert callgrind.check(_scaled(baseline, "sw_off", 1.0), baseline) == []

    def test_a_ratio_beyond_the_margin_is_reported(self, baseline: dict[str, Any]) -> None:
        """A stepwatch count 6 % higher than the baseline's is more than the 5 % margin."""
        problems = callgrind.check(_scaled(baseline, "sw_defaults", 1.06), baseline)
        assert [p for p in problems if p.startswith("defaults") and "worse than" in p]
        assert all(p.startswith("defaults") for p in problems)

    def test_a_ratio_within_the_margin_passes(self, baseline: dict[str, Any]) -> None:
        """A stepwatch count 4 % higher than the baseline's is within the 5 % margin."""
        assert callgrind.check(_scaled(baseline, "sw_defaults", 1.04), baseline) == []

    def test_a_met_target_that_is_exceeded_is_reported(self, baseline: dict[str, Any]) -> None:
        """Once the baseline meets a target, exceeding it fails even within the margin."""
        met = copy.deepcopy(baseline)
        met["pairs"]["own"].update(ratio=1.19, target_met=True)  # the baseline meets 1.2×
        counts = _scaled(met, "sw_off_own", 1.0)
        counts["sw_off_own"] = counts["anyio_own"] * 1.21  # 1.7 % worse: within the margin
        problems = callgrind.check(counts, met)
        assert [p for p in problems if "exceeds its target" in p]

    def test_a_missed_target_once_met_asks_for_a_refresh(self, baseline: dict[str, Any]) -> None:
        """A target the baseline misses, met now, is reported with the refresh command."""
        missed = copy.deepcopy(baseline)
        missed["pairs"]["off"]["target_met"] = False
        counts = _scaled(missed, "sw_off", 1.0)
        counts["sw_off"] = counts["anyio"] * 1.1
        _, newly_met = callgrind.misses(counts, missed)
        assert [line for line in newly_met if line.startswith("off") and "refresh" in line]


@pytest.mark.callgrind
@pytest.mark.slow
@pytest.mark.timeout(900)
class TestCounted:
    """The counts of this checkout, under valgrind."""

    def test_no_ratio_more_than_the_margin_worse_than_the_baseline(
        self, per_child: dict[str, float], baseline: dict[str, Any]
    ) -> None:
        """No stepwatch/hand-written ratio grows more than the margin over the committed one."""
        problems = callgrind.check(per_child, baseline)
        assert not problems, "\n".join([*problems, f"deliberate? refresh: {callgrind.REFRESH}"])

    @pytest.mark.parametrize("pair", callgrind.PAIRS, ids=[p.key for p in callgrind.PAIRS])
    def test_ratio_within_target(
        self,
        pair: callgrind.Pair,
        per_child: dict[str, float],
        baseline: dict[str, Any],
        request: pytest.FixtureRequest,
    ) -> None:
        """Each ratio meets its issue-10 target; a miss the baseline records is a strict xfail."""
        recorded = baseline["pairs"][pair.key]
        if not recorded["target_met"]:
            request.applymarker(
                pytest.mark.xfail(
                    strict=True,
                    reason=f"the baseline records {recorded['ratio']}× > {pair.target}× "
                    f"(once met, XPASS fails: refresh with {callgrind.REFRESH})",
                )
            )
        ratio = callgrind.ratios(per_child)[pair.key]
        assert ratio <= pair.target, (
            f"{pair.what}: {ratio:.3f}× > {pair.target}× "
            f"({per_child[pair.stepwatch]:,.0f} vs {per_child[pair.baseline]:,.0f} Ir/child)"
        )
