"""Every PromQL expression in the dashboard and the alert rules uses only metrics the
library exports (stepwatch.http's included), only its labels and label values, and parses
(``promtool check rules``)."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from stepwatch import Flow, FlowExecutor, Parallel, Request
from stepwatch.http import HTTP_METRIC_NAMES, DeadlineMiddleware, DeadlineTransport

from .helpers import (
    CONTRACT,
    HTTP_CONTRACT,
    HTTP_LABELS,
    LABELS,
    binary,
    dashboard_exprs,
    grouping_labels,
    metric_names,
    recorded_names,
    replace_macros,
    rule_exprs,
    sample_names,
    variable_metrics,
)

ALL_EXPRS = dashboard_exprs() + variable_metrics() + rule_exprs()


@cache
def library_families() -> dict[str, str]:
    """{family: type} of the stepwatch metrics the real library registers on a fresh
    registry after one flow run; empty while the metrics decorator is still a stub."""

    async def slow(params: object) -> None:
        await anyio.sleep(1)

    async def fast(params: object) -> int:
        return 1

    registry = CollectorRegistry()
    executor = FlowExecutor(handlers={"slow": slow, "fast": fast}, registry=registry)
    flow = Flow(
        "names",
        [
            Parallel(
                "p",
                [Request("a", "fast"), Request("b", "slow")],
                timeout=0.05,
                on_timeout="partial",
            )
        ],
    )
    anyio.run(executor.run, flow)
    return {
        family.name: family.type
        for family in registry.collect()
        if family.name.startswith("stepwatch_")
    }


@cache
def http_families() -> dict[str, tuple[str, frozenset[str], frozenset[tuple[str, str]]]]:
    """{family: (type, label names, (label, value) pairs)} of the stepwatch.http metrics
    the real library registers on a fresh registry, after one request through
    ``DeadlineMiddleware`` and one call through ``DeadlineTransport`` (in memory)."""
    registry = CollectorRegistry()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def traffic() -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": [(b"x-request-timeout-ms", b"1000")],
        }
        await DeadlineMiddleware(app, registry=registry)(scope, receive, send)
        mock = httpx.MockTransport(lambda request: httpx.Response(200))
        transport = DeadlineTransport(mock, target="pricing", registry=registry)
        async with httpx.AsyncClient(transport=transport) as client:
            with anyio.fail_after(5):
                await client.get("http://pricing.test/")

    anyio.run(traffic)
    found = {}
    for family in registry.collect():
        pairs = {(k, v) for sample in family.samples for k, v in sample.labels.items()}
        pairs = {(k, v) for k, v in pairs if k != "le"}
        found[family.name] = (family.type, frozenset(k for k, _ in pairs), frozenset(pairs))
    return found


@cache
def exported_names() -> frozenset[str]:
    """Series names the library exports: asked from the real library, or — only while
    its metrics are a stub — taken from the docs/telemetry.md contract (marked)."""
    families = library_families() or CONTRACT  # FALLBACK: contract list (stub decorator)
    http = {name: kind for name, (kind, _, _) in http_families().items()}
    return frozenset(sample_names(families) | sample_names(http))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param("up", {"up"}, id="bare"),
        pytest.param(
            'sum by (flow, step) (rate(a_total{job=~"$job", x="b_total"}[5m])) / on (flow) '
            "group_left (step) b_count offset 5m",
            {"a_total", "b_count"},
            id="grouping-strings-offset",
        ),
        pytest.param(
            "histogram_quantile(0.95, sum without (instance) (rate(h_bucket[1m]))) > 1e-3",
            {"h_bucket"},
            id="quantile-number",
        ),
        pytest.param(
            "rec:ratio:rate5m > (14.4 * 0.01) and rec:ratio:rate1h > 0.1",
            {"rec:ratio:rate5m", "rec:ratio:rate1h"},
            id="recorded-and",
        ),
    ],
)
def test_metric_name_extraction(expr: str, expected: set[str]) -> None:
    """The PromQL name extractor finds exactly the selected metrics, nothing else."""
    assert metric_names(expr) == expected


def test_library_exports_the_contract() -> None:
    """The real library registers exactly the metric families docs/telemetry.md lists."""
    families = library_families()
    if not families:
        pytest.skip("metrics decorator is still a stub: no stepwatch metrics registered")
    assert families == CONTRACT


def test_http_library_exports_the_contract() -> None:
    """stepwatch.http registers exactly the seven documented families, with the documented
    types and labels, under the names it publishes as ``HTTP_METRIC_NAMES``."""
    families = http_families()
    assert {name: kind for name, (kind, _, _) in families.items()} == HTTP_CONTRACT
    assert {name: set(labels) for name, (_, labels, _) in families.items()} == HTTP_LABELS
    assert {name.removesuffix("_total") for name in HTTP_METRIC_NAMES} == set(HTTP_CONTRACT)


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_fixed_label_matchers_use_values_the_library_emits(where: str, expr: str) -> None:
    """A matcher on a fixed value (``reason="spent"``) names a label value the real
    stepwatch.http metrics carry (the ``reason`` and ``phase`` series exist from the
    start), so the expression cannot silently match nothing."""
    emitted = set().union(*(pairs for _, _, pairs in http_families().values()))
    for label, value in re.findall(r'\b(\w+)="([^"$]*)"', expr):
        assert (label, value) in emitted, f"{where}: {label}={value!r} is never emitted"


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_expression_uses_exported_metrics(where: str, expr: str) -> None:
    """Every metric an expression selects is exported by the library (or recorded by our
    own recording rules), with histogram/counter suffixes understood."""
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    unknown = names - exported_names() - recorded_names()
    assert not unknown, f"{where}: {sorted(unknown)} not exported by stepwatch"


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_expression_groups_by_known_labels(where: str, expr: str) -> None:
    """Every label an expression groups or matches by is one the metrics carry."""
    assert grouping_labels(expr) <= LABELS, f"{where}: unknown labels"


def test_dashboard_shows_every_metric() -> None:
    """Each metric family, the core's and stepwatch.http's, appears in at least one
    dashboard query."""
    used = set().union(*(metric_names(expr) for _, expr in dashboard_exprs()))
    for family, kind in {**CONTRACT, **HTTP_CONTRACT}.items():
        assert used & sample_names({family: kind}), f"{family} is on no dashboard panel"


@pytest.mark.prometheus
def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool accepts every dashboard expression (Grafana macros replaced) as a rule."""
    promtool = binary("promtool")
    exprs = [replace_macros(expr) for _, expr in dashboard_exprs() + variable_metrics()]
    rules = {
        "groups": [
            {
                "name": "dashboard-syntax-check",
                "rules": [
                    {"record": f"check:expr_{i}", "expr": expr} for i, expr in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    run = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in run.stdout
