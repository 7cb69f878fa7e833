"""Shared helpers for the dashboard, alert-rule and Prometheus tests.

PromQL is checked without a PromQL parser in Python: :func:`metric_names` strips strings,
label matchers, ranges and grouping clauses and keeps the identifiers that are not
functions or keywords; ``promtool check rules`` then proves each expression parses.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import require_tool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "stepwatch.json"
RULES = ROOT / "dashboards" / "alerts" / "stepwatch-rules.yml"
RULES_TEMPLATE = ROOT / "dashboards" / "alerts" / "stepwatch-rules.template.yml"
RULES_RENDERER = ROOT / "dashboards" / "alerts" / "render_rules.py"
RULE_TESTS = ROOT / "dashboards" / "alerts" / "stepwatch-rules.test.yml"
SCHEMAS = ROOT / "dashboards" / "schema"
RUNBOOK = ROOT / "docs" / "runbook.md"
SERVICE = ROOT / "examples" / "service"

# The metric families the library exports, by type (docs/telemetry.md; the fallback when
# the real library cannot be asked, and the contract the real library is compared against).
CONTRACT: dict[str, str] = {
    "stepwatch_step_duration_seconds": "histogram",
    "stepwatch_step_timeouts": "counter",  # exposed as stepwatch_step_timeouts_total
    "stepwatch_step_timeout_budget_ratio": "histogram",
    "stepwatch_steps_in_progress": "gauge",
    "stepwatch_parallel_children_cancelled": "counter",
    "stepwatch_abandoned_workers": "gauge",
    "stepwatch_flow_duration_seconds": "histogram",
    "stepwatch_flow_timeouts": "counter",  # exposed as stepwatch_flow_timeouts_total
    "stepwatch_step_overrun_seconds": "counter",  # exposed as ..._total
}
# The metric families of stepwatch.http (docs/telemetry.md, "HTTP deadlines"), created on
# a registry by the first DeadlineMiddleware, JsonRpcApp, DeadlineTransport or JsonRpcClient.
HTTP_CONTRACT: dict[str, str] = {
    "stepwatch_inbound_requests": "counter",
    "stepwatch_inbound_rejected": "counter",
    "stepwatch_inbound_expired": "counter",
    "stepwatch_inbound_budget_seconds": "histogram",
    "stepwatch_outbound_requests": "counter",
    "stepwatch_outbound_not_sent": "counter",
    "stepwatch_outbound_budget_seconds": "histogram",
}
# Their labels (besides le), as documented.
HTTP_LABELS: dict[str, set[str]] = {
    "stepwatch_inbound_requests": {"source"},
    "stepwatch_inbound_rejected": {"reason"},
    "stepwatch_inbound_expired": {"phase"},
    "stepwatch_inbound_budget_seconds": set(),
    "stepwatch_outbound_requests": {"target"},
    "stepwatch_outbound_not_sent": {"target"},
    "stepwatch_outbound_budget_seconds": {"target"},
}
# Label names the expressions may group or match by: the library's plus Prometheus' own.
LABELS = {"flow", "step", "step_type", "outcome", "cause", "le", "job", "instance"} | set().union(
    *HTTP_LABELS.values()
)

# Grafana macros → values that make the expression plain PromQL (REAL-STACK.md).
MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def sample_names(families: dict[str, str]) -> set[str]:
    """Series names Prometheus stores for metric families given as {family name: type}."""
    names: set[str] = set()
    for name, kind in families.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif kind == "counter":
            names.add(name if name.endswith("_total") else f"{name}_total")
        else:
            names.add(name)
    return names


def load_dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def load_rules() -> dict[str, Any]:
    """The alert rules file."""
    data: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of the dashboard, rows' collapsed children included, rows excluded."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_exprs(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(where, expr) for every query target of every panel."""
    dashboard = load_dashboard() if dashboard is None else dashboard
    return [
        (f"panel {panel['title']!r} target {target['refId']}", target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variable_metrics(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(where, metric selector) of every ``label_values(metric, label)`` variable query."""
    dashboard = load_dashboard() if dashboard is None else dashboard
    found = []
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if var["type"] == "query" and isinstance(query, str):
            match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", query)
            assert match, f"variable {var['name']}: unexpected query {query!r}"
            found.append((f"variable {var['name']!r}", match.group(1)))
    return found


def rule_exprs(rules: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(where, expr) for every recording and alerting rule."""
    rules = load_rules() if rules is None else rules
    return [
        (f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def recorded_names(rules: dict[str, Any] | None = None) -> set[str]:
    """Names defined by the recording rules (``level:metric:operations``)."""
    rules = load_rules() if rules is None else rules
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def replace_macros(expr: str, *, job: str = ".*", rate_interval: str | None = None) -> str:
    """Make a Grafana query plain PromQL: macros replaced, ``$job`` set."""
    macros = dict(MACROS)
    if rate_interval is not None:
        macros["$__rate_interval"] = rate_interval
    for macro, value in macros.items():
        expr = expr.replace(macro, value)
    return expr.replace("${job}", job).replace("$job", job)


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_NUMBERS = re.compile(r"(?<![\w:])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|(?<![\w:])\.\d+")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def _clean(expr: str) -> str:
    expr = _STRINGS.sub('""', expr)
    while _MATCHERS.search(expr):
        expr = _MATCHERS.sub(" ", expr)
    return _RANGES.sub(" ", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels dropped)."""
    text = _GROUPING.sub(" ", _clean(expr))
    text = _NUMBERS.sub(" ", _OFFSET.sub(" ", text))
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue  # a function, an aggregation, or an operator keyword
        names.add(match.group())
    return names


def grouping_labels(expr: str) -> set[str]:
    """Label names used in ``by``/``without``/``on``/``ignoring``/``group_*`` clauses."""
    labels = set()
    for match in _GROUPING.finditer(_clean(expr)):
        labels |= {part.strip() for part in match.group(2).split(",") if part.strip()}
    return labels


def renderer() -> Any:
    """dashboards/alerts/render_rules.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("stepwatch_render_rules", RULES_RENDERER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_INSTALLERS = {
    "prometheus-alertmanager": ".ci/install-alertmanager.sh",
    "amtool": ".ci/install-alertmanager.sh",
}


def binary(name: str) -> str:
    """Path of a Prometheus binary (env ``PROMETHEUS_BIN``/``PROMTOOL_BIN``/
    ``PROMETHEUS_ALERTMANAGER_BIN`` or PATH).

    Skips the test when it is missing, except under ``CI=true`` where it fails: CI
    installs it with ``.ci/install-prometheus.sh`` / ``.ci/install-alertmanager.sh`` and
    these tests are mandatory there.
    """
    env = name.upper().replace("-", "_") + "_BIN"
    installer = _INSTALLERS.get(name, ".ci/install-prometheus.sh")
    return require_tool(
        os.environ.get(env) or shutil.which(name),
        f"{name} binary not found (install it with `bash {installer}`, or set {env})",
    )
