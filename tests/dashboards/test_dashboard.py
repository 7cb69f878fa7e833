"""The Grafana dashboard validates against Grafana's published JSON schemas (vendored
under dashboards/schema/) and follows the project's dashboard rules."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml

from .helpers import ROOT, SCHEMAS, load_dashboard, load_rules, panels

DASHBOARD = load_dashboard()
PANELS = panels(DASHBOARD)
PANEL_IDS = [f"{p['id']}-{p['title']}" for p in PANELS]


@cache
def schema(name: str) -> dict[str, Any]:
    """A vendored schema file (dashboard, timeseries, stat, prometheus)."""
    data: dict[str, Any] = json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text())
    return data


def errors(schema_name: str, definition: str | None, instance: object) -> list[str]:
    """Validation errors of ``instance`` against a schema (or one of its definitions)."""
    root = schema(schema_name)
    if definition is not None:
        root = {**root, "$ref": f"#/definitions/{definition}"}
    validator = jsonschema.Draft7Validator(root)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(instance)]


def test_dashboard_level_validates() -> None:
    """The dashboard object (panels checked one by one below) matches the Dashboard schema."""
    top = {**DASHBOARD, "panels": []}
    assert errors("dashboard", None, top) == []


def test_schema_rejects_unknown_fields() -> None:
    """The vendored schema is strict: an unknown dashboard field fails validation."""
    assert errors("dashboard", None, {**DASHBOARD, "panels": [], "rows": []})


def base_threshold_as_number(panel: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``panel`` with the base threshold's ``null`` replaced by a number.

    Grafana writes the base step's -Infinity as ``null``; the schema types ``value`` as a
    number and says so ("Nulls currently appear here when serializing -Infinity to JSON").
    Only this one documented case is translated; every other field is validated as is.
    """
    copy: dict[str, Any] = json.loads(json.dumps(panel))
    steps = copy.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
    if steps and steps[0].get("value", 0) is None:
        steps[0]["value"] = -1e308
    return copy


@pytest.mark.parametrize("panel", DASHBOARD["panels"], ids=lambda p: f"{p['id']}-{p['type']}")
def test_panel_validates(panel: dict[str, Any]) -> None:
    """Each top-level panel matches Panel (or RowPanel) of the dashboard schema."""
    definition = "RowPanel" if panel["type"] == "row" else "Panel"
    assert errors("dashboard", definition, base_threshold_as_number(panel)) == []


def test_only_the_base_threshold_may_be_null() -> None:
    """A null threshold value other than the first step still fails validation."""
    panel = base_threshold_as_number(PANELS[1])
    panel["fieldConfig"]["defaults"]["thresholds"]["steps"].append({"color": "red", "value": None})
    assert errors("dashboard", "Panel", base_threshold_as_number(panel))


@pytest.mark.parametrize("panel", PANELS, ids=PANEL_IDS)
def test_panel_plugin_options_validate(panel: dict[str, Any]) -> None:
    """Options and custom field config match the panel plugin's schema, and every query
    target matches the Prometheus dataquery schema."""
    assert panel["type"] in ("timeseries", "stat"), "no vendored schema for this panel type"
    assert errors(panel["type"], "Options", panel["options"]) == []
    if panel["type"] == "timeseries":
        custom = panel["fieldConfig"]["defaults"].get("custom", {})
        assert errors("timeseries", "FieldConfig", custom) == []
    for target in panel["targets"]:
        assert errors("prometheus", None, target) == []


def test_fixed_uid_and_current_schema_version() -> None:
    """The dashboard has the fixed uid and Grafana 11.6's schemaVersion."""
    assert DASHBOARD["uid"] == "stepwatch-overview"
    assert (
        DASHBOARD["schemaVersion"]
        == schema("dashboard")["definitions"]["Dashboard"]["properties"]["schemaVersion"]["default"]
    )


def test_variables() -> None:
    """A Prometheus data source variable, and job, flow, step and target variables (each
    narrowed by the ones before it that apply), multi-select with "All" matching every
    value."""
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "flow", "step", "target"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    queries = {
        "job": "label_values(stepwatch_step_duration_seconds_count, job)",
        "flow": 'label_values(stepwatch_step_duration_seconds_count{job=~"$job"}, flow)',
        "step": (
            'label_values(stepwatch_step_duration_seconds_count{job=~"$job", flow=~"$flow"}, step)'
        ),
        "target": 'label_values(stepwatch_outbound_requests_total{job=~"$job"}, target)',
    }
    for name, query in queries.items():
        var = variables[name]
        assert var["type"] == "query"
        assert var["query"] == query
        assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert var["multi"] is True and var["includeAll"] is True
        assert var["allValue"] == ".*"


# Panels over metrics without a step label (or labelled with the parallel step's name, not
# the step being looked at) follow the flow selection only.
FLOW_ONLY = {
    "stepwatch_flow_timeouts_total",
    "stepwatch_flow_duration_seconds_count",
    "stepwatch_flow_duration_seconds_bucket",
    "stepwatch_steps_in_progress",
    "stepwatch_abandoned_workers",
    "stepwatch_parallel_children_cancelled_total",
}


def variable_filters(metric: str) -> list[str]:
    """The variable matchers every selector of ``metric`` must carry, in order: the
    stepwatch.http metrics have no flow or step (inbound: job; outbound: job and target),
    flow-level metrics follow job and flow, step metrics job, flow and step."""
    if metric.startswith("stepwatch_inbound_"):
        return ['job=~"$job"']
    if metric.startswith("stepwatch_outbound_"):
        return ['job=~"$job"', 'target=~"$target"']
    expected = ['job=~"$job"', 'flow=~"$flow"']
    if metric not in FLOW_ONLY:
        expected.append('step=~"$step"')
    return expected


@pytest.mark.parametrize("panel", PANELS, ids=PANEL_IDS)
def test_panel_has_description_unit_and_uses_variables(panel: dict[str, Any]) -> None:
    """Every panel has a description, a unit, the datasource variable, the variable filters
    that apply to its metrics on every selector (job and flow, step where the metric is
    per step, target for outbound calls), other matchers only on fixed values, and
    ``$__rate_interval`` in every rate window."""
    assert panel["description"].strip()
    assert panel["fieldConfig"]["defaults"]["unit"]
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for target in panel["targets"]:
        expr = target["expr"]
        assert target["datasource"] == panel["datasource"]
        selectors = re.findall(r"(\w+)\{([^}]*)\}", expr)
        assert selectors, expr
        for metric, matchers in selectors:
            found = [m.strip() for m in matchers.split(",")]
            assert [m for m in found if "$" in m] == variable_filters(metric), expr
            for fixed in (m for m in found if "$" not in m):
                assert re.fullmatch(r'\w+="[^"]+"', fixed), f"{fixed} in {expr!r}"
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"fixed window [{window}] in {expr!r}"


def test_first_row_answers_which_flows_miss_their_deadline() -> None:
    """The top row shows, per flow, the flow timeout rate, the flow timeout ratio and the
    flow duration p95/p99 (with exemplars), from the flow metrics."""
    top = sorted(DASHBOARD["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    assert top[0]["type"] == "row" and "deadline" in top[0]["title"]
    first_row = [p for p in top[1:] if p["gridPos"]["y"] < top[0]["gridPos"]["y"] + 2]
    assert [p["title"] for p in first_row] == [
        "Flow timeouts per second",
        "Flow timeout ratio",
        "Flow duration p95 / p99",
    ]
    rate, ratio, duration = ([t["expr"] for t in p["targets"]] for p in first_row)
    assert rate == [
        'sum by (flow) (rate(stepwatch_flow_timeouts_total{job=~"$job", flow=~"$flow"}'
        "[$__rate_interval]))"
    ]
    assert "stepwatch_flow_timeouts_total" in ratio[0].split("/")[0]
    assert "stepwatch_flow_duration_seconds_count" in ratio[0].split("/")[1]
    assert [re.findall(r"histogram_quantile\(([\d.]+),", e) for e in duration] == [
        ["0.95"],
        ["0.99"],
    ]
    assert all("stepwatch_flow_duration_seconds_bucket" in e for e in duration)
    assert all(t["exemplar"] is True for t in first_row[2]["targets"])
    assert [p["fieldConfig"]["defaults"]["unit"] for p in first_row] == ["ops", "percentunit", "s"]


def test_expected_panels() -> None:
    """The flow panels and the step panels exist, latency with exemplars on for all
    quantiles."""
    by_title = {p["title"]: p for p in PANELS}
    assert set(by_title) == {
        "Flow timeouts per second",
        "Flow timeout ratio",
        "Flow duration p95 / p99",
        "Step throughput",
        "Timeout ratio by step",
        "Step latency p50 / p95 / p99",
        "Budget use p95 by step",
        "Steps in progress",
        "Parallel children cancelled by cause",
        "Abandoned worker threads",
        "Overrun past the deadline by step (event loop held)",
        *HTTP_ROW,
    }
    latency = by_title["Step latency p50 / p95 / p99"]
    quantiles = [re.search(r"histogram_quantile\(([\d.]+)", t["expr"]) for t in latency["targets"]]
    assert [q.group(1) for q in quantiles if q] == ["0.5", "0.95", "0.99"]
    assert all(t["exemplar"] is True for t in latency["targets"])
    assert latency["fieldConfig"]["defaults"]["unit"] == "s"
    ratio = by_title["Timeout ratio by step"]["targets"][0]["expr"]
    assert "stepwatch_step_timeouts_total" in ratio
    assert "stepwatch_step_duration_seconds_count" in ratio
    budget = by_title["Budget use p95 by step"]
    assert budget["targets"][0]["expr"].startswith("histogram_quantile(0.95,")
    assert "stepwatch_step_timeout_budget_ratio_bucket" in budget["targets"][0]["expr"]
    assert budget["fieldConfig"]["defaults"]["max"] == 1  # a timeout is exactly 1.0
    assert (
        "by (flow, step, cause)"
        in by_title["Parallel children cancelled by cause"]["targets"][0]["expr"]
    )


# The stepwatch.http row, in reading order: title → (unit, metrics its queries select).
HTTP_ROW = {
    "Requests rejected: budget spent on arrival": (
        "percentunit",
        {"stepwatch_inbound_rejected_total", "stepwatch_inbound_requests_total"},
    ),
    "Inbound requests by budget source": ("reqps", {"stepwatch_inbound_requests_total"}),
    "Inbound budget on arrival p50 / p10": ("s", {"stepwatch_inbound_budget_seconds_bucket"}),
    "Inbound deadline expired while handling": ("reqps", {"stepwatch_inbound_expired_total"}),
    "Outbound calls not sent for lack of budget": (
        "percentunit",
        {"stepwatch_outbound_not_sent_total", "stepwatch_outbound_requests_total"},
    ),
    "Time left when calling each downstream p50 / p10": (
        "s",
        {"stepwatch_outbound_budget_seconds_bucket"},
    ),
}


def _alert_threshold(name: str) -> float:
    """The ratio threshold of a stepwatch.http alert (``<ratio> > X and <traffic> > Y``)."""
    (rule,) = [r for g in load_rules()["groups"] for r in g["rules"] if r.get("alert") == name]
    found = re.search(r"\)\s*>\s*([\d.]+)\s+and\b", rule["expr"])
    assert found, rule["expr"]
    return float(found.group(1))


def test_http_row_shows_deadlines_across_services() -> None:
    """The last row holds the stepwatch.http panels in reading order, with their units and
    metrics; the two ratio panels draw the alert thresholds and divide the right counters;
    the quantile panels show p50 and p10 per job (and target)."""
    rows = [p for p in DASHBOARD["panels"] if p["type"] == "row"]
    last = max(rows, key=lambda p: p["gridPos"]["y"])
    assert "across services" in last["title"]
    below = sorted(
        (p for p in DASHBOARD["panels"] if p["gridPos"]["y"] > last["gridPos"]["y"]),
        key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]),
    )
    assert [p["title"] for p in below] == list(HTTP_ROW)
    for panel in below:
        unit, metrics = HTTP_ROW[panel["title"]]
        assert panel["fieldConfig"]["defaults"]["unit"] == unit, panel["title"]
        used = set().union(*(set(re.findall(r"(\w+)\{", t["expr"])) for t in panel["targets"]))
        assert used == metrics, panel["title"]
    by_title = {p["title"]: p for p in below}
    for title, alert in (
        ("Requests rejected: budget spent on arrival", "StepwatchInboundBudgetSpent"),
        ("Outbound calls not sent for lack of budget", "StepwatchOutboundNotSent"),
    ):
        panel = by_title[title]
        numerator, denominator = panel["targets"][0]["expr"].split("\n/\n")
        assert ("rejected" in numerator) or ("not_sent" in numerator), numerator
        assert "requests_total" in denominator and "requests_total" not in numerator
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [s["value"] for s in steps[1:]] == [_alert_threshold(alert)], title
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
        assert alert in panel["description"]
    assert (
        'reason="spent"'
        in by_title["Requests rejected: budget spent on arrival"]["targets"][0]["expr"]
    )
    for title, by in (
        ("Inbound budget on arrival p50 / p10", "by (le, job)"),
        ("Time left when calling each downstream p50 / p10", "by (le, job, target)"),
    ):
        exprs = [t["expr"] for t in by_title[title]["targets"]]
        assert [re.findall(r"histogram_quantile\(([\d.]+),", e) for e in exprs] == [
            ["0.5"],
            ["0.1"],
        ]
        assert all(by in e for e in exprs), exprs


def test_descriptions_name_only_real_panels_and_alerts() -> None:
    """Panel descriptions that mention an alert or another panel use real names."""
    alerts = {r["alert"] for g in load_rules()["groups"] for r in g["rules"] if "alert" in r}
    for panel in PANELS:
        for name in re.findall(r"\b(Stepwatch[A-Za-z]+)\b", panel["description"]):
            prefix = name.rstrip("*")
            assert any(a.startswith(prefix) for a in alerts), f"{panel['title']}: {name}"


def test_panel_ids_unique_and_grid_does_not_overlap() -> None:
    """Panel ids are unique and no two panels share a grid cell."""
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"panel {panel['id']} overlaps another"
        assert g["x"] + g["w"] <= 24
        cells |= mine


def test_provisioning_files() -> None:
    """The Grafana provisioning files define a Prometheus data source and load the
    dashboards folder that docker-compose mounts."""
    prov = ROOT / "dashboards" / "provisioning"
    datasources = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["jsonData"]["exemplarTraceIdDestinations"][0]["name"] == "trace_id"
    providers = yaml.safe_load((prov / "dashboards" / "stepwatch.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/stepwatch"
    compose = yaml.safe_load((ROOT / "examples" / "service" / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert (
        "../../dashboards/stepwatch.json:/var/lib/grafana/dashboards/stepwatch/stepwatch.json:ro"
        in volumes
    )
    assert "../../dashboards/provisioning:/etc/grafana/provisioning:ro" in volumes
