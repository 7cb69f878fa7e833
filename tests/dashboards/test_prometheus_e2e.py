"""End to end against a real Prometheus server: the example service is scraped, driven
with induced timeouts, and every dashboard query returns data; the alert rules load.

One Prometheus and one service per module (the first scrape comes ≈ 5.5 s after start,
whatever the scrape interval). Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from .helpers import RULES, SERVICE, binary, dashboard_exprs, replace_macros

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

JOB = "stepwatch-example"
RATE_WINDOW = "30s"  # $__rate_interval stand-in: at least 4 scrapes at 1 s


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` every 0.1 s until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError) as exc:  # not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def get_json(url: str) -> Any:
    """GET a URL and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process we started; kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def load_module() -> Any:
    """examples/service/load.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("stepwatch_example_load", SERVICE / "load.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example service as a subprocess on 127.0.0.1:<free port>; yields its base URL."""
    log = tmp_path_factory.mktemp("service") / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SERVICE / "app.py"), "--host", "127.0.0.1", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": ""},
        )
    try:

        def listening() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
            return found.group(1) if found else None

        yield wait_for("the example service", listening)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def prometheus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1:<free port> scraping the service every second with
    the stepwatch alert rules loaded; yields its base URL once the target is up."""
    prometheus_bin = binary("prometheus")  # skip (or fail in CI) before starting anything
    service: str = request.getfixturevalue("service")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [service.split("://")[1]]}]}
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = tmp / "prometheus.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                "--web.listen-address=127.0.0.1:0",
                "--enable-feature=exemplar-storage",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r'msg="Listening on" address=(127\.0\.0\.1:\d+)', log.read_text())
            return f"http://{found.group(1)}" if found else None

        url: str = wait_for("Prometheus to listen", listening)
        wait_for(
            "Prometheus to be ready", lambda: urllib.request.urlopen(f"{url}/-/ready").status == 200
        )
        ready = time.monotonic() - started

        def target_up() -> bool:
            result = query(url, f'up{{job="{JOB}"}}')
            return bool(result) and result[0]["value"][1] == "1"

        wait_for("the first scrape (up == 1)", target_up, timeout=30)
        print(
            f"\nprometheus: ready after {ready:.2f} s, target up after "
            f"{time.monotonic() - started:.2f} s"
        )
        yield url
    finally:
        stop(proc)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """An instant query; returns the result vector."""
    data = get_json(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


@pytest.fixture(scope="module")
def driven(service: str, prometheus: str) -> str:
    """Drive the service with induced timeouts, twice, with scrapes in between.

    A warm-up creates every series (incl. abandoned workers and cancellations) and is
    scraped; the main load then gives every rate() real increments to see.
    """
    load = load_module()
    warm = load.run_load(service, requests=24, concurrency=8, slow=0.5)
    assert warm.get("http_200") == 24, warm
    for name in ("stepwatch_parallel_children_cancelled_total", "stepwatch_abandoned_workers"):
        wait_for(f"{name} scraped", lambda name=name: query(prometheus, name))
    counts = load.run_load(service, requests=60, concurrency=8, slow=0.4)
    assert counts.get("http_200") == 60, counts
    assert counts.get("pricing:fallback", 0) > 0, counts  # own-timeout children
    assert counts.get("reviews:cancelled", 0) > 0, counts  # group-deadline cancellations
    time.sleep(2.5)  # two more scrapes
    return prometheus


DASHBOARD_QUERIES = dashboard_exprs()


@pytest.mark.parametrize(
    ("where", "expr"), DASHBOARD_QUERIES, ids=[w for w, _ in DASHBOARD_QUERIES]
)
def test_dashboard_query_returns_data(driven: str, where: str, expr: str) -> None:
    """Each dashboard query (macros and $job replaced) returns at least one finite sample."""
    promql = replace_macros(expr, job=JOB, rate_interval=RATE_WINDOW)
    result = query(driven, promql)
    assert result, f"{where}: no data for {promql}"
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(v) for v in values), f"{where}: only {values} for {promql}"


def test_job_variable_lists_the_job(driven: str) -> None:
    """The dashboard's job variable query finds the scraped job."""
    data = get_json(
        f"{driven}/api/v1/label/job/values?"
        + urllib.parse.urlencode({"match[]": "stepwatch_step_duration_seconds_count"})
    )
    assert data["data"] == [JOB]


def test_series_have_the_contract_labels(driven: str) -> None:
    """Scraped series carry exactly the DESIGN.md §5 labels, with contract label values."""
    expected = {
        "stepwatch_step_duration_seconds_count": {"flow", "step", "step_type", "outcome"},
        "stepwatch_step_timeouts_total": {"flow", "step", "step_type"},
        "stepwatch_step_timeout_budget_ratio_count": {"flow", "step", "step_type"},
        "stepwatch_steps_in_progress": {"flow", "step_type"},
        "stepwatch_parallel_children_cancelled_total": {"flow", "step", "cause"},
        "stepwatch_abandoned_workers": {"flow", "step_type"},
        "stepwatch_step_overrun_seconds_total": {"flow", "step", "step_type"},
    }
    for name, labels in expected.items():
        result = query(driven, f'{name}{{job="{JOB}"}}')
        assert result, name
        for sample in result:
            assert set(sample["metric"]) == labels | {"__name__", "job", "instance"}, sample
    outcomes = {
        s["metric"]["outcome"] for s in query(driven, "stepwatch_step_duration_seconds_count")
    }
    assert (
        {"success", "timeout", "cancellation"}
        <= outcomes
        <= {"success", "failure", "timeout", "cancellation"}
    )
    causes = {
        s["metric"]["cause"] for s in query(driven, "stepwatch_parallel_children_cancelled_total")
    }
    assert "deadline" in causes
    timeouts = query(driven, f'stepwatch_step_timeouts_total{{job="{JOB}", step="pricing"}}')
    assert float(timeouts[0]["value"][1]) > 0


def test_rules_load_with_health_ok(driven: str) -> None:
    """Prometheus loads every recording and alerting rule, and each evaluates with health ok."""

    def all_evaluated() -> list[dict[str, Any]] | None:
        groups = get_json(f"{driven}/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(r["health"] == "ok" for r in rules) else None

    rules = wait_for("every rule evaluated with health ok", all_evaluated, timeout=10)
    names = {r["name"] for r in rules}
    assert {
        "StepwatchTimeoutBudgetBurnFast",
        "StepwatchTimeoutBudgetBurnSlow",
        "StepwatchStepNearBudget",
        "StepwatchAbandonedWorkersPilingUp",
        "stepwatch:step_timeout_ratio:rate5m",
    } <= names
    assert len(rules) == 8
    ratio = query(driven, f'stepwatch:step_timeout_ratio:rate5m{{job="{JOB}", step="pricing"}}')
    assert ratio and 0 < float(ratio[0]["value"][1]) <= 1


def test_exemplars_reach_prometheus(driven: str, service: str) -> None:
    """Duration exemplars with a trace_id are scraped from the OpenMetrics exposition."""
    with urllib.request.urlopen(f"{service}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        exposition = response.read().decode()
    if "trace_id=" not in exposition:
        pytest.skip("the library emits no exemplars yet (tracing or metrics decorator stub)")
    now = time.time()
    data = get_json(
        f"{driven}/api/v1/query_exemplars?"
        + urllib.parse.urlencode(
            {
                "query": f'stepwatch_step_duration_seconds_bucket{{job="{JOB}"}}',
                "start": now - 120,
                "end": now,
            }
        )
    )
    exemplars = [e for series in data["data"] for e in series["exemplars"]]
    assert exemplars, data
    assert all(re.fullmatch(r"[0-9a-f]{32}", e["labels"]["trace_id"]) for e in exemplars)
