"""The alert rules pass ``promtool check rules`` and their ``promtool test rules`` unit
tests, the unit tests catch broken rules, and every alert is documented and links to its
runbook section and to the dashboard with its flow and step selected."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from .helpers import (
    RULE_TESTS,
    RULES,
    RUNBOOK,
    SERVICE,
    binary,
    load_dashboard,
    load_rules,
    renderer,
)

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
    count = sum(len(group["rules"]) for group in load_rules()["groups"])
    assert f"SUCCESS: {count} rules found" in run.stdout


@pytest.mark.prometheus
def test_unit_tests_pass() -> None:
    """``promtool test rules`` passes: each alert fires when it should, silent otherwise."""
    run = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


FAST = "stepwatch:step_timeout_ratio:rate5m > (14.4 * 0.01)\n          and\n          "
FLOW_FAST = "stepwatch:flow_timeout_ratio:rate5m > (14.4 * 0.01)\n          and\n          "


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
            FAST + "stepwatch:step_timeout_ratio:rate1h > (14.4 * 0.01)",
            "stepwatch:step_timeout_ratio:rate1h > (14.4 * 0.01)\n          and\n          "
            "stepwatch:step_timeout_ratio:rate5m > (14.4 * 0.01)",
            id="fast-burn-quotes-the-1h-window",
        ),
        pytest.param(
            "stepwatch:step_timeout_ratio:rate30m > (6 * 0.01)\n          and\n          "
            "stepwatch:step_timeout_ratio:rate6h > (6 * 0.01)",
            "stepwatch:step_timeout_ratio:rate6h > (6 * 0.01)\n          and\n          "
            "stepwatch:step_timeout_ratio:rate30m > (6 * 0.01)",
            id="slow-burn-quotes-the-6h-window",
        ),
        pytest.param(
            "stepwatch:flow_timeout_ratio:rate1h > (14.4 * 0.01)",
            "stepwatch:flow_timeout_ratio:rate1h > (20 * 0.01)",
            id="flow-fast-burn-1h-threshold",
        ),
        pytest.param(
            "stepwatch:flow_timeout_ratio:rate30m > (6 * 0.01)",
            "stepwatch:flow_timeout_ratio:rate30m > (10 * 0.01)",
            id="flow-slow-burn-threshold",
        ),
        pytest.param(
            FLOW_FAST + "stepwatch:flow_timeout_ratio:rate1h > (14.4 * 0.01)",
            "stepwatch:flow_timeout_ratio:rate1h > (14.4 * 0.01)\n          and\n          "
            "stepwatch:flow_timeout_ratio:rate5m > (14.4 * 0.01)",
            id="flow-fast-burn-quotes-the-1h-window",
        ),
        pytest.param(
            "sum by (job, flow) (rate(stepwatch_flow_timeouts_total[5m]))",
            "sum by (job, flow) (rate(stepwatch_step_timeouts_total[5m]))",
            id="flow-ratio-from-step-timeouts",
        ),
        pytest.param(
            ") > 0.8\n          unless", ") > 0.9\n          unless", id="near-budget-0.9"
        ),
        pytest.param(
            "0.8\n          unless on (job, flow, step)\n          "
            "stepwatch:step_timeout_ratio:rate5m >= 0.05\n        for: 10m",
            "0.8\n        for: 10m",
            id="near-budget-fires-while-timing-out",
        ),
        pytest.param(
            "stepwatch:step_timeout_ratio:rate5m >= 0.05",
            "stepwatch:step_timeout_ratio:rate5m > 0",
            id="near-budget-silenced-by-any-timeout",
        ),
        pytest.param(
            "rate5m >= 0.05\n        for: 10m",
            "rate5m >= 0.05\n        for: 1m",
            id="near-budget-for",
        ),
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
        pytest.param(
            'rate(stepwatch_inbound_rejected_total{reason="spent"}[5m]))\n          /\n'
            "          sum by (job) (rate(stepwatch_inbound_requests_total[5m]))\n"
            "          > 0.05",
            'rate(stepwatch_inbound_rejected_total{reason="spent"}[5m]))\n          /\n'
            "          sum by (job) (rate(stepwatch_inbound_requests_total[5m]))\n"
            "          > 0.02",
            id="inbound-spent-threshold",
        ),
        pytest.param(
            "sum by (job) (rate(stepwatch_inbound_requests_total[5m])) > 0.2",
            "sum by (job) (rate(stepwatch_inbound_requests_total[5m])) > 0",
            id="inbound-spent-no-traffic-guard",
        ),
        pytest.param(
            'stepwatch_inbound_rejected_total{reason="spent"}',
            "stepwatch_inbound_rejected_total",
            id="inbound-spent-counts-invalid-headers",
        ),
        pytest.param(
            "sum by (job) (rate(stepwatch_inbound_requests_total[5m])) > 0.2\n        for: 10m",
            "sum by (job) (rate(stepwatch_inbound_requests_total[5m])) > 0.2\n        for: 5m",
            id="inbound-spent-for",
        ),
        pytest.param(
            "sum by (job, target) (rate(stepwatch_outbound_requests_total[5m]))\n          > 0.05",
            "sum by (job, target) (rate(stepwatch_outbound_requests_total[5m]))\n          > 0.5",
            id="outbound-not-sent-threshold",
        ),
        pytest.param(
            "sum by (job, target) (rate(stepwatch_outbound_requests_total[5m])) > 0.2",
            "sum by (job, target) (rate(stepwatch_outbound_requests_total[5m])) > 0",
            id="outbound-not-sent-no-traffic-guard",
        ),
        pytest.param(
            "sum by (job, target) (rate(stepwatch_outbound_not_sent_total[5m]))\n"
            "          /\n          sum by (job, target)",
            "sum by (target) (rate(stepwatch_outbound_not_sent_total[5m]))\n"
            "          /\n          sum by (target)",
            id="outbound-not-sent-across-jobs",
        ),
        pytest.param(
            "&var-target={{ $labels.target | urlquery }}",
            "&var-target={{ $labels.target }}",
            id="outbound-link-target-not-urlquery",
        ),
        pytest.param("&var-step={{ $labels.step | urlquery }}", "", id="dashboard-link-no-step"),
        pytest.param("{{ $labels.step | urlquery }}", "{{ $labels.step }}", id="no-urlquery"),
    ],
)
def test_unit_tests_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    """With one threshold, duration, window order, aggregation or link changed, the unit
    tests fail."""
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


DASHBOARD_VARIABLES = {v["name"] for v in load_dashboard()["templating"]["list"]}


@pytest.mark.parametrize("alert", ALERTS, ids=ALERT_NAMES)
def test_alert_is_documented(alert: dict[str, Any]) -> None:
    """Every alert has a severity, a summary, a description, an absolute runbook_url whose
    anchor is its section of docs/runbook.md, and a dashboard_url that opens the dashboard
    with the alert's own labels selected."""
    render = renderer()
    assert alert["labels"]["severity"] in {"critical", "warning"}
    annotations = alert["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    url, _, anchor = annotations["runbook_url"].partition("#")
    assert url == render.DEFAULT_RUNBOOK_URL
    assert anchor == alert["alert"].lower()
    assert anchor in _anchors(RUNBOOK.read_text())
    link = urlsplit(annotations["dashboard_url"])
    assert f"{link.scheme}://{link.netloc}{link.path}" == render.dashboard_url(
        render.DEFAULT_GRAFANA_URL
    )
    query = dict(parse_qsl(link.query))
    assert set(query) <= {f"var-{name}" for name in DASHBOARD_VARIABLES}
    text = annotations["summary"] + annotations["description"]
    named = set(re.findall(r"\$labels\.(job|flow|step|target)\b", text))
    assert set(query) == {f"var-{label}" for label in named}, "selects what the alert names"
    for name, value in query.items():
        assert value == f"{{{{ $labels.{name[4:]} | urlquery }}}}"


def test_burn_rate_pairs() -> None:
    """The burn-rate alerts are multi-window (page 14.4x over 5m and 1h, ticket 6x over 30m
    and 6h, for flows and steps) against the documented 1 % error budget, with the short
    window on the left so that ``$value`` is the ratio the description names."""
    by_name = {a["alert"]: a for a in ALERTS}
    for kind in ("flow", "step"):
        prefix = "StepwatchFlow" if kind == "flow" else "Stepwatch"
        fast = by_name[f"{prefix}TimeoutBudgetBurnFast"]
        slow = by_name[f"{prefix}TimeoutBudgetBurnSlow"]
        record = f"stepwatch:{kind}_timeout_ratio"
        assert [line.strip() for line in fast["expr"].strip().splitlines()] == [
            f"{record}:rate5m > (14.4 * 0.01)",
            "and",
            f"{record}:rate1h > (14.4 * 0.01)",
        ]
        assert [line.strip() for line in slow["expr"].strip().splitlines()] == [
            f"{record}:rate30m > (6 * 0.01)",
            "and",
            f"{record}:rate6h > (6 * 0.01)",
        ]
        assert "last 5 minutes" in fast["annotations"]["description"]
        assert "last 30 minutes" in slow["annotations"]["description"]
        assert fast["labels"]["severity"] == "critical"
        assert slow["labels"]["severity"] == "warning"
    assert "1 %" in RULES.read_text().split("groups:")[0]  # the SLO is documented


@pytest.mark.prometheus
def test_example_prometheus_config(tmp_path: Path) -> None:
    """``promtool check config examples/service/prometheus.yml`` passes as committed, from
    any directory, and the config loads the shipped rules file."""
    config = yaml.safe_load((SERVICE / "prometheus.yml").read_text())
    (rule_file,) = config["rule_files"]
    assert (SERVICE / rule_file).resolve() == RULES.resolve()
    run = promtool("check", "config", SERVICE / "prometheus.yml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 1 rule files found" in run.stdout


def _sections(markdown: str) -> dict[str, str]:
    """The ``## `` sections of a markdown page, by heading."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _panel_references(text: str) -> list[str]:
    """Single-asterisk emphasis (``*Title*``) other than the severity lines: in the
    runbook these name dashboard panels."""
    found = re.findall(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])", text)
    return [f for f in found if not f.startswith("Severity")]


def test_runbook_walks_from_each_alert_to_real_panels() -> None:
    """Every alert's runbook section names at least one dashboard panel, every panel the
    runbook names exists under that exact title, and the exemplar-to-trace walk is there."""
    runbook = RUNBOOK.read_text()
    titles = {p["title"] for p in load_dashboard()["panels"] if p["type"] != "row"} | {
        p["title"] for row in load_dashboard()["panels"] for p in row.get("panels", [])
    }
    named = _panel_references(runbook)
    assert named
    assert set(named) <= titles, sorted(set(named) - titles)
    sections = _sections(runbook)
    for alert in ALERT_NAMES:
        assert alert in sections, f"no section for {alert}"
        assert _panel_references(sections[alert]), f"{alert}: no panel named"
        assert "trace" in sections[alert], f"{alert}: no way to a trace"
    assert "trace" in sections["From a panel to a trace"]
    assert load_dashboard()["title"] in runbook


def test_runbook_says_how_to_set_the_urls() -> None:
    """The runbook shows the command that renders the rules with a team's own URLs."""
    section = _sections(RUNBOOK.read_text())["Setting the links for your team"]
    for needle in ("render_rules.py", "--runbook-url", "--grafana-url", "--output"):
        assert needle in section
