"""The alert rules pass ``promtool check rules`` and their ``promtool test rules`` unit
tests, the unit tests catch broken rules, and every alert is documented."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import RULE_TESTS, RULES, RUNBOOK, SERVICE, binary, load_rules

ALERTS: list[dict[str, Any]] = [
    rule for group in load_rules()["groups"] for rule in group["rules"] if "alert" in rule
]
ALERT_NAMES = [a["alert"] for a in ALERTS]


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool (skipped locally / failed under CI=true when it is missing)."""
    return subprocess.run(
        [binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd
    )


@pytest.mark.prometheus
def test_check_rules() -> None:
    """``promtool check rules`` accepts the rules file."""
    run = promtool("check", "rules", RULES)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 8 rules found" in run.stdout


@pytest.mark.prometheus
def test_unit_tests_pass() -> None:
    """``promtool test rules`` passes: each alert fires when it should, silent otherwise."""
    run = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(
            "rate1h > (14.4 * 0.01)", "rate1h > (1.44 * 0.01)", id="fast-burn-1h-threshold"
        ),
        pytest.param(
            "rate5m > (14.4 * 0.01)", "rate5m > (144 * 0.01)", id="fast-burn-5m-threshold"
        ),
        pytest.param("> (6 * 0.01)", "> (2 * 0.01)", id="slow-burn-threshold"),
        pytest.param(
            ") > 0.8\n        for: 10m", ") > 0.9\n        for: 10m", id="near-budget-0.9"
        ),
        pytest.param(") > 0.8\n        for: 10m", ") > 0.8\n        for: 1m", id="near-budget-for"),
        pytest.param(
            "(stepwatch_abandoned_workers) >= 5",
            "(stepwatch_abandoned_workers) >= 7",
            id="abandoned-threshold",
        ),
        pytest.param(
            "sum by (job, flow, step_type) (stepwatch_abandoned_workers)",
            "max by (job, flow, step_type) (stepwatch_abandoned_workers)",
            id="abandoned-not-summed",
        ),
    ],
)
def test_unit_tests_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    """With one threshold, duration or aggregation changed, the unit tests fail."""
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    run = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert run.returncode != 0, f"mutation {old!r} -> {new!r} went unnoticed:\n{run.stdout}"
    assert "FAILED" in run.stdout + run.stderr


def test_each_alert_fires_and_stays_silent_in_its_tests() -> None:
    """The unit tests expect every alert both firing and silent at some evaluation."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    fired: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    assert fired == set(ALERT_NAMES)
    assert silent == set(ALERT_NAMES)


def _anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of the markdown headings."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("alert", ALERTS, ids=ALERT_NAMES)
def test_alert_is_documented(alert: dict[str, Any]) -> None:
    """Every alert has a severity, a summary, a description and a runbook_url whose anchor
    is a section of docs/runbook.md."""
    assert alert["labels"]["severity"] in {"critical", "warning"}
    annotations = alert["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    path, _, anchor = annotations["runbook_url"].partition("#")
    assert path.endswith("docs/runbook.md")
    assert anchor == alert["alert"].lower()
    assert anchor in _anchors(RUNBOOK.read_text())


def test_burn_rate_pairs() -> None:
    """The burn-rate alerts are multi-window: page 14.4x over 1h and 5m, ticket 6x over 6h
    and 30m, against the documented 1 % error budget."""
    by_name = {a["alert"]: a for a in ALERTS}
    fast = by_name["StepwatchTimeoutBudgetBurnFast"]
    slow = by_name["StepwatchTimeoutBudgetBurnSlow"]
    assert "rate1h > (14.4 * 0.01)" in fast["expr"] and "rate5m > (14.4 * 0.01)" in fast["expr"]
    assert "rate6h > (6 * 0.01)" in slow["expr"] and "rate30m > (6 * 0.01)" in slow["expr"]
    assert fast["labels"]["severity"] == "critical"
    assert slow["labels"]["severity"] == "warning"
    assert "1 %" in RULES.read_text().split("groups:")[0]  # the SLO is documented


@pytest.mark.prometheus
def test_example_prometheus_config(tmp_path: Path) -> None:
    """The docker-compose Prometheus config is valid and loads the same rules file."""
    config = yaml.safe_load((SERVICE / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/stepwatch-rules.yml"]
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    run = promtool("check", "config", path)
    assert run.returncode == 0, run.stdout + run.stderr
