"""The on-call path end to end, on real servers: the example service under load → a real
Prometheus (exemplar storage on) evaluating the shipped rules → a real Alertmanager → a
webhook receiver in this test, and the service's spans → an OTLP receiver in this test.

The example service is an ASGI application on uvicorn: its checkout endpoint runs under
``DeadlineMiddleware`` and calls its pricing backend (a ``JsonRpcApp`` in the same process)
through ``JsonRpcClient``, so the load's callers' budgets (some spent on arrival, some too
small to call pricing) produce the ``stepwatch.http`` metrics the last dashboard row and
two alerts use.

It checks that every alert fires with its documented labels and rendered annotations (the
runbook link opens the alert's section, the dashboard link selects the alert's job, flow
and step, or target) and resolves once the load stops; that every dashboard query and
variable returns data; that exemplars name spans that were really exported; and that the
spans the runbook sends the on-call to (``stepwatch.deadline.*`` attributes) were exported.

The rules are the shipped ones with shorter windows and ``for:`` durations, made by the
documented, tested ``render_rules.py --shorten`` (5m→20s, 30m→40s, 1h→1m, 6h→90s, for
10s), so the real expressions fire and resolve within a minute or two. One stack per
module; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .helpers import (
    SERVICE,
    binary,
    dashboard_exprs,
    load_dashboard,
    load_rules,
    renderer,
)

# The first test pays for the stack and the load (about two minutes), the last one waits
# for every alert to resolve: both need more than the default per-test timeout.
pytestmark = [pytest.mark.prometheus, pytest.mark.slow, pytest.mark.timeout(300)]

JOB = "stepwatch-example"
SCRAPE_INTERVAL = 1.0  # seconds (also the data source's "timeInterval" Grafana would use)
GRAFANA = "http://grafana.test:3000"  # only rendered into links, never contacted
LOAD_SECONDS = 90.0  # upper bound; the load stops once every alert has fired
RESOLVE_SECONDS = 150.0

ALERTS = {
    rule["alert"]: rule
    for group in load_rules()["groups"]
    for rule in group["rules"]
    if "alert" in rule
}
# Which labels each alert's notification carries (besides alertname and severity), and
# the series it must fire for under the "all" load scenario.
EXPECTED = {
    "StepwatchFlowTimeoutBudgetBurnFast": {"flow": "checkout"},
    "StepwatchFlowTimeoutBudgetBurnSlow": {"flow": "checkout"},
    "StepwatchTimeoutBudgetBurnFast": {"flow": "checkout", "step": "pricing"},
    "StepwatchTimeoutBudgetBurnSlow": {"flow": "checkout", "step": "pricing"},
    "StepwatchStepNearBudget": {"flow": "checkout", "step": "tax"},
    "StepwatchAbandonedWorkersPilingUp": {"flow": "checkout", "step_type": "request"},
    "StepwatchInboundBudgetSpent": {},
    "StepwatchOutboundNotSent": {"target": "pricing"},
}
# Alert labels that are dashboard variables, in the order the dashboard links set them.
LINKED = ("job", "flow", "step", "target")


# -- small helpers ---------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` every 0.2 s until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError) as exc:  # not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def get(url: str) -> bytes:
    """GET a URL on 127.0.0.1."""
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


def get_json(url: str) -> Any:
    """GET a URL and decode its JSON body."""
    return json.loads(get(url))


def api(prometheus: str, path: str, **params: Any) -> Any:
    """A Prometheus HTTP API call; returns ``data`` after checking the status."""
    body = get_json(f"{prometheus}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True))
    assert body["status"] == "success", body
    return body["data"]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process this test started; kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def start(args: list[str], log: Path, pattern: str, env: dict[str, str] | None = None) -> Any:
    """Start a server process; return (process, the address its log announces)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)

    def listening() -> str | None:
        assert proc.poll() is None, log.read_text()
        found = re.search(pattern, log.read_text())
        return found.group(1) if found else None

    try:
        return proc, wait_for(f"{Path(args[0]).name} to listen", listening)
    except BaseException:
        stop(proc)
        raise


def load_module() -> Any:
    """examples/service/load.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("stepwatch_example_load", SERVICE / "load.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rate_interval(scrape_interval: float, interval: float) -> str:
    """Grafana's ``$__rate_interval``: max($__interval + scrape interval, 4 × scrape
    interval), in whole seconds."""
    return f"{math.ceil(max(interval + scrape_interval, 4 * scrape_interval))}s"


def grafana_substitute(expr: str, variables: dict[str, str], interval: float) -> str:
    """An expression as Grafana sends it: ``$__rate_interval``/``$__interval`` and every
    template variable (``$name`` and ``${name}``) replaced."""
    expr = expr.replace("$__rate_interval", rate_interval(SCRAPE_INTERVAL, interval))
    expr = expr.replace("$__interval", f"{math.ceil(interval)}s")
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, f"unreplaced variable in {expr!r}"
    return expr


def test_rate_interval_is_grafanas() -> None:
    """``$__rate_interval`` follows Grafana's rule: at least four scrapes, else the
    interval plus one scrape."""
    assert rate_interval(1, 1) == "4s"
    assert rate_interval(15, 60) == "75s"
    assert grafana_substitute('rate(x{job=~"$job"}[$__rate_interval])', {"job": ".*"}, 2) == (
        'rate(x{job=~".*"}[4s])'
    )


# -- receivers in this process ---------------------------------------------------------------


@dataclass
class Inbox:
    """What a receiver got, guarded by a lock."""

    items: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)

    def snapshot(self) -> list[Any]:
        with self.lock:
            return list(self.items)


def receiver(handle: Callable[[bytes, dict[str, str]], bytes]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1:<free port> passing each POST body to ``handle``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            reply = handle(body, dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class Span:
    """An exported span: ids, name, parent and attributes."""

    trace_id: str
    span_id: str
    name: str
    parent_id: str
    attributes: dict[str, Any]


def _value(any_value: Any) -> Any:
    """The Python value of an OTLP ``AnyValue`` (scalars only; arrays as lists)."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


@dataclass
class Stack:
    service: str
    prometheus: str
    alertmanager: str
    notifications: Inbox
    spans: Inbox
    started: float = 0.0
    load_started: float = 0.0
    load_stopped: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def firing(stack: Stack) -> dict[str, dict[str, Any]]:
    """alertname → first firing alert received at the webhook."""
    found: dict[str, dict[str, Any]] = {}
    for message in stack.notifications.snapshot():
        for alert in message["alerts"]:
            if alert["status"] == "firing":
                found.setdefault(alert["labels"]["alertname"], alert)
    return found


def resolved(stack: Stack) -> set[tuple[tuple[str, str], ...]]:
    """Label sets of alerts received as resolved."""
    return {
        tuple(sorted(alert["labels"].items()))
        for message in stack.notifications.snapshot()
        for alert in message["alerts"]
        if alert["status"] == "resolved"
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Service, Prometheus, Alertmanager and both receivers, up and scraping; the load has
    not started yet."""
    prometheus_bin = binary("prometheus")  # skip (or fail in CI) before starting anything
    alertmanager_bin = binary("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("stack")
    started = time.monotonic()
    notifications, spans = Inbox(), Inbox()

    def on_notification(body: bytes, headers: dict[str, str]) -> bytes:
        notifications.add(json.loads(body))
        return b""

    def on_spans(body: bytes, headers: dict[str, str]) -> bytes:
        encoding = headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    spans.add(
                        Span(
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.name,
                            span.parent_span_id.hex(),
                            attributes,
                        )
                    )
        return ExportTraceServiceResponse().SerializeToString()

    procs: list[subprocess.Popen[bytes]] = []
    webhook_cm, otlp_cm = receiver(on_notification), receiver(on_spans)
    webhook, otlp = next(webhook_cm), next(otlp_cm)
    try:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_SERVICE_NAME": "stepwatch-example",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100000",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2048",
        }
        proc, service = start(
            [sys.executable, str(SERVICE / "app.py"), "--host", "127.0.0.1", "--port", "0"],
            tmp / "service.log",
            r"listening on (http://127\.0\.0\.1:\d+)",
            env,
        )
        procs.append(proc)

        am_config = {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname", "job", "flow", "step", "step_type", "target"],
                "group_wait": "1s",
                "group_interval": "2s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "hook",
                    "webhook_configs": [{"url": f"{webhook}/alerts", "send_resolved": True}],
                }
            ],
        }
        (tmp / "am.yml").write_text(yaml.safe_dump(am_config))
        proc, am_address = start(
            [
                alertmanager_bin,
                f"--config.file={tmp / 'am.yml'}",
                f"--storage.path={tmp / 'am-data'}",
                "--web.listen-address=127.0.0.1:0",
                "--cluster.listen-address=",
            ],
            tmp / "alertmanager.log",
            r"[Ll]istening on\"? address=(127\.0\.0\.1:[1-9]\d*)",
        )
        procs.append(proc)
        alertmanager = f"http://{am_address}"
        wait_for("Alertmanager ready", lambda: get(f"{alertmanager}/-/ready") is not None)

        render = renderer()
        rules = render.shorten(
            render.render(
                render.TEMPLATE.read_text(), runbook_url=f"{service}/runbook", grafana_url=GRAFANA
            )
        )
        (tmp / "rules.yml").write_text(rules)
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL:g}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL:g}s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(tmp / "rules.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_address]}]}]},
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": [service.split("://")[1]]}]}
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        proc, prom_address = start(
            [
                prometheus_bin,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                "--web.listen-address=127.0.0.1:0",
                "--enable-feature=exemplar-storage",
            ],
            tmp / "prometheus.log",
            r'msg="Listening on" address=(127\.0\.0\.1:\d+)',
        )
        procs.append(proc)
        prometheus = f"http://{prom_address}"
        wait_for("Prometheus ready", lambda: get(f"{prometheus}/-/ready") is not None)

        def target_up() -> bool:
            result = api(prometheus, "query", query=f'up{{job="{JOB}"}}')["result"]
            return bool(result) and result[0]["value"][1] == "1"

        wait_for("the first scrape (up == 1)", target_up, timeout=30)
        built = Stack(service, prometheus, alertmanager, notifications, spans, started=started)
        built.timings["stack up"] = time.monotonic() - started
        yield built
    finally:
        for proc in reversed(procs):
            stop(proc)
        for cm in (otlp_cm, webhook_cm):
            next(cm, None)


@pytest.fixture(scope="module")
def loaded(stack: Stack) -> Stack:
    """Run the "all" load scenario until every alert has fired (at most LOAD_SECONDS);
    then stop the load."""
    load = load_module()
    done = threading.Event()
    counts: dict[str, int] = {}

    def drive() -> None:
        counts.update(
            load.run_load(
                stack.service,
                requests=10**9,
                concurrency=8,
                scenario="all",
                duration=LOAD_SECONDS,
                stop=done,
            )
        )

    stack.load_started = time.monotonic()
    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline and thread.is_alive():
            if set(firing(stack)) >= set(ALERTS):
                time.sleep(3)  # a few more scrapes with every alert firing
                break
            time.sleep(0.5)
    finally:
        done.set()
        thread.join(timeout=30)
    stack.load_stopped = time.monotonic()
    stack.counts = counts
    stack.timings["load"] = stack.load_stopped - stack.load_started
    print(f"\nload: {counts}\ntimings: {stack.timings}")
    return stack


# -- alerts: fire, with the documented labels and rendered annotations -----------------------


def test_every_shipped_alert_is_expected() -> None:
    """The test expects a firing series for every alert the rules ship (a new alert needs a
    load scenario and an entry here)."""
    assert set(EXPECTED) == set(ALERTS)


def test_load_drove_every_scenario(loaded: Stack) -> None:
    """The load produced what the alerts and panels need: own timeouts, group-deadline,
    sibling-failure, quorum and caller cancellations, failures and flow deadline misses;
    requests whose budget was spent on arrival answered 504, and requests whose budget was
    too small to call pricing answered 502 (or 504 when the budget ran out first)."""
    counts = loaded.counts
    assert counts.get("http_200", 0) > 100, counts
    assert counts.get("http_504", 0) > 0 and counts.get("http_502", 0) > 0, counts
    assert counts.get("pricing:fallback", 0) > 0, counts
    assert counts.get("reviews:cancelled", 0) > 0, counts
    spent = {k: v for k, v in counts.items() if k.startswith("spent:")}
    assert spent and set(spent) == {"spent:http_504"}, counts
    starved = {k: v for k, v in counts.items() if k.startswith("starved:")}
    assert counts.get("starved:http_502", 0) > 0, counts
    assert set(starved) <= {"starved:http_502", "starved:http_504"}, counts


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_alert_fires_with_documented_labels_and_annotations(loaded: Stack, name: str) -> None:
    """Each alert reached the webhook firing, with exactly its documented labels, every
    annotation rendered (no template left), and the URLs a team configured."""
    assert name in firing(loaded), f"{name} never fired; got {sorted(firing(loaded))}"
    rule = ALERTS[name]
    expected = {"alertname": name, "severity": rule["labels"]["severity"], "job": JOB}
    expected.update(EXPECTED[name])
    matching = [
        a["labels"]
        for m in loaded.notifications.snapshot()
        for a in m["alerts"]
        if a["labels"]["alertname"] == name and a["status"] == "firing"
    ]
    assert expected in matching, f"{name} fired only for {matching}"
    assert all(set(m) == set(expected) for m in matching), matching
    annotations = next(
        a["annotations"]
        for m in loaded.notifications.snapshot()
        for a in m["alerts"]
        if a["labels"] == expected and a["status"] == "firing"
    )
    assert set(annotations) == set(rule["annotations"])
    for key, text in annotations.items():
        assert "{{" not in text and "$labels" not in text and "@" not in text, (key, text)
        assert "<no value>" not in text, (key, text)
    for label in ("job", "flow", "step", "target"):
        if label in expected:
            assert f"{label} {expected[label]}" in annotations["description"], label
    assert re.search(r"\d", annotations["description"]), "the value is quoted"
    assert annotations["runbook_url"] == f"{loaded.service}/runbook#{name.lower()}"
    query = {f"var-{label}": expected[label] for label in LINKED if label in expected}
    assert annotations["dashboard_url"] == (
        f"{GRAFANA}/d/stepwatch-overview/stepwatch?{urllib.parse.urlencode(query)}"
    )


def test_runbook_links_open_the_alerts_section(loaded: Stack) -> None:
    """Every delivered runbook_url answers, and its #anchor is a heading of the page."""
    urls = {a["annotations"]["runbook_url"] for a in firing(loaded).values()}
    assert len(urls) == len(ALERTS)
    for url in urls:
        page, _, anchor = url.partition("#")
        assert f'id="{anchor}"' in get(page).decode(), url


def test_dashboard_links_select_real_variables(loaded: Stack) -> None:
    """Every delivered dashboard_url opens the shipped dashboard (its uid) and sets only
    variables the dashboard has, to values those variables offer."""
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for alert in firing(loaded).values():
        link = urllib.parse.urlsplit(alert["annotations"]["dashboard_url"])
        assert link.path == f"/d/{dashboard['uid']}/stepwatch"
        for key, value in urllib.parse.parse_qsl(link.query):
            name = key.removeprefix("var-")
            assert name in variables, key
            offered = variable_values(loaded.prometheus, variables[name]["query"], loaded)
            assert value in offered, (key, value, offered)


def test_near_budget_stays_quiet_for_steps_that_time_out(loaded: Stack) -> None:
    """StepwatchStepNearBudget fired for the step close to its budget only, never for the
    steps that were timing out (their budget use is pinned at 1.0)."""
    fired_for = {
        a["labels"].get("step")
        for m in loaded.notifications.snapshot()
        for a in m["alerts"]
        if a["labels"]["alertname"] == "StepwatchStepNearBudget"
    }
    burning = {
        a["labels"].get("step")
        for m in loaded.notifications.snapshot()
        for a in m["alerts"]
        if a["labels"]["alertname"] == "StepwatchTimeoutBudgetBurnFast"
    }
    assert "tax" in fired_for
    assert "pricing" in burning
    assert not fired_for & burning, (fired_for, burning)


# -- every dashboard query against the real data ---------------------------------------------


def variable_values(prometheus: str, query: str, stack: Stack) -> list[str]:
    """The values a ``label_values(selector, label)`` variable offers (Grafana asks the
    label values API with the selector as ``match[]``), the other variables at "All"."""
    match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", query)
    assert match, query
    selector = grafana_substitute(match.group(1), ALL, 1)
    now = time.time()
    values: list[str] = api(
        prometheus,
        f"label/{match.group(2)}/values",
        **{"match[]": selector, "start": now - 600, "end": now},
    )
    return values


ALL = {"job": ".*", "flow": ".*", "step": ".*", "target": ".*"}
"""Every template variable at "All"."""
VARIABLES = [
    (v["name"], v["query"]) for v in load_dashboard()["templating"]["list"] if v["type"] == "query"
]


@pytest.mark.parametrize(("name", "query"), VARIABLES, ids=[n for n, _ in VARIABLES])
def test_variable_query_offers_values(loaded: Stack, name: str, query: str) -> None:
    """Each templating query finds the scraped job, flows, steps and outbound targets."""
    values = variable_values(loaded.prometheus, query, loaded)
    expected = {
        "job": {JOB},
        "flow": {"checkout"},
        "step": {"pricing", "tax", "enrich"},
        "target": {"pricing"},
    }
    assert expected[name] <= set(values), values


DASHBOARD_QUERIES = dashboard_exprs()


@pytest.mark.parametrize(
    ("where", "expr"), DASHBOARD_QUERIES, ids=[w for w, _ in DASHBOARD_QUERIES]
)
def test_dashboard_query_returns_data(loaded: Stack, where: str, expr: str) -> None:
    """Each panel query, with the variables at "All" and ``$__rate_interval`` as Grafana
    computes it, returns at least one series with a finite value over the load."""
    step = 2.0
    promql = grafana_substitute(expr, ALL, step)
    now = time.time()
    data = api(
        loaded.prometheus,
        "query_range",
        query=promql,
        start=now - (time.monotonic() - loaded.load_started) - 5,
        end=now,
        step=step,
    )
    assert data["result"], f"{where}: no series for {promql}"
    values = [float(v) for series in data["result"] for _, v in series["values"]]
    assert any(math.isfinite(v) for v in values), f"{where}: no finite value for {promql}"


def test_series_have_the_contract_labels(loaded: Stack) -> None:
    """Scraped series carry exactly the documented labels, with contract label values, for
    the step and the flow metrics."""
    expected = {
        "stepwatch_step_duration_seconds_count": {"flow", "step", "step_type", "outcome"},
        "stepwatch_step_timeouts_total": {"flow", "step", "step_type"},
        "stepwatch_step_timeout_budget_ratio_count": {"flow", "step", "step_type"},
        "stepwatch_steps_in_progress": {"flow", "step_type"},
        "stepwatch_parallel_children_cancelled_total": {"flow", "step", "cause"},
        "stepwatch_abandoned_workers": {"flow", "step_type"},
        "stepwatch_flow_duration_seconds_count": {"flow", "outcome"},
        "stepwatch_flow_timeouts_total": {"flow"},
        "stepwatch_step_overrun_seconds_total": {"flow", "step", "step_type"},
        "stepwatch_inbound_requests_total": {"source"},
        "stepwatch_inbound_rejected_total": {"reason"},
        "stepwatch_inbound_expired_total": {"phase"},
        "stepwatch_inbound_budget_seconds_count": set(),
        "stepwatch_outbound_requests_total": {"target"},
        "stepwatch_outbound_not_sent_total": {"target"},
        "stepwatch_outbound_budget_seconds_count": {"target"},
    }
    for name, labels in expected.items():
        result = api(loaded.prometheus, "query", query=f'{name}{{job="{JOB}"}}')["result"]
        assert result, name
        for sample in result:
            assert set(sample["metric"]) == labels | {"__name__", "job", "instance"}, sample

    def values(metric: str, label: str) -> set[str]:
        result = api(loaded.prometheus, "query", query=metric)["result"]
        return {s["metric"][label] for s in result}

    contract = {"success", "failure", "timeout", "cancellation"}
    assert values("stepwatch_step_duration_seconds_count", "outcome") == contract
    assert values("stepwatch_flow_duration_seconds_count", "outcome") == contract
    assert values("stepwatch_parallel_children_cancelled_total", "cause") == {
        "deadline",
        "sibling_failure",
        "quorum_met",
        "outside",
    }
    timeouts = api(
        loaded.prometheus, "query", query=f'stepwatch_flow_timeouts_total{{job="{JOB}"}}'
    )["result"]
    assert float(timeouts[0]["value"][1]) > 0
    # the /checkout callers sent budgets or none (the server's default applied); the pricing
    # calls always carry one
    assert {"header", "default"} <= values("stepwatch_inbound_requests_total", "source")
    assert values("stepwatch_inbound_rejected_total", "reason") == {"spent", "invalid"}
    assert values("stepwatch_outbound_requests_total", "target") == {"pricing"}


def test_rules_load_with_health_ok(loaded: Stack) -> None:
    """Prometheus loads every recording and alerting rule, and each evaluates with health ok."""
    groups = api(loaded.prometheus, "rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in load_rules()["groups"])
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    assert set(ALERTS) <= {r["name"] for r in rules}


# -- exemplars lead to traces that were really exported --------------------------------------


def test_exemplars_name_exported_spans(loaded: Stack) -> None:
    """Exemplars of the step and flow duration histograms carry trace and span ids of spans
    the service really exported over OTLP, and each names the span of its own series."""
    now = time.time()
    exemplars: list[tuple[dict[str, str], dict[str, str]]] = []
    for metric in (
        "stepwatch_step_duration_seconds_bucket",
        "stepwatch_flow_duration_seconds_bucket",
    ):
        data = api(
            loaded.prometheus,
            "query_exemplars",
            query=f'{metric}{{job="{JOB}"}}',
            start=now - 600,
            end=now,
        )
        exemplars += [(s["seriesLabels"], e["labels"]) for s in data for e in s["exemplars"]]
    kinds = {series["__name__"] for series, _ in exemplars}
    assert kinds == {
        "stepwatch_step_duration_seconds_bucket",
        "stepwatch_flow_duration_seconds_bucket",
    }

    def exported() -> dict[tuple[str, str], str] | None:
        spans = {(s.trace_id, s.span_id): s.name for s in loaded.spans.snapshot()}
        wanted = {(e["trace_id"], e["span_id"]) for _, e in exemplars}
        return spans if wanted <= set(spans) else None

    spans = wait_for("the exemplars' spans to be exported", exported, timeout=15)
    for series, exemplar in exemplars:
        name = spans[(exemplar["trace_id"], exemplar["span_id"])]
        if series["__name__"].startswith("stepwatch_flow_"):
            assert name == f"flow {series['flow']}"
        else:
            assert name == f"{series['step_type']} {series['step']}"
    print(f"\n{len(exemplars)} exemplars, all resolved to exported spans")


# -- the spans the runbook sends the on-call to were exported -------------------------------


def test_deadline_spans_the_runbook_names_were_exported(loaded: Stack) -> None:
    """The traces the runbook's stepwatch.http sections point to exist: server spans of
    requests rejected on arrival (``stepwatch.deadline.rejected=spent``, budget 0, from a
    header), pricing step spans of calls not sent (``stepwatch.deadline.not_sent``, with
    the time that was left and ``error.type``), and pricing calls that were sent, whose
    server span on the backend continues the calling step's trace with the budget it got."""

    def deadline_spans() -> list[Span] | None:
        spans = loaded.spans.snapshot()
        rejected = [s for s in spans if s.attributes.get("stepwatch.deadline.rejected")]
        not_sent = [s for s in spans if s.attributes.get("stepwatch.deadline.not_sent")]
        return spans if rejected and not_sent else None

    spans = wait_for("stepwatch.deadline spans to be exported", deadline_spans, timeout=15)
    by_id = {(s.trace_id, s.span_id): s for s in spans}
    rejected = [s for s in spans if "stepwatch.deadline.rejected" in s.attributes]
    assert {s.attributes["stepwatch.deadline.rejected"] for s in rejected} == {"spent"}
    assert any(s.name.startswith("GET /checkout") for s in rejected), rejected[:3]
    for span in rejected:
        assert span.attributes["stepwatch.deadline.inbound_budget"] == 0.0, span
        assert span.attributes["stepwatch.deadline.source"] == "header", span
    not_sent = [s for s in spans if s.attributes.get("stepwatch.deadline.not_sent")]
    margin = 0.01  # PRICING_MARGIN of the example service
    for span in not_sent:
        assert span.name == "request pricing", span
        # below zero when the event loop was held past the deadline (the "block" knob)
        assert span.attributes["stepwatch.deadline.time_left"] <= margin, span
    errors = {s.attributes.get("error.type") for s in not_sent}
    assert "stepwatch.http.BudgetExhaustedError" in errors, errors
    sent = [
        s
        for s in spans
        if s.name == "request pricing" and "stepwatch.deadline.budget_sent" in s.attributes
    ]
    assert sent
    backend = [s for s in spans if s.name.startswith("POST /rpc")]
    continued = [
        (by_id[(s.trace_id, s.parent_id)], s) for s in backend if (s.trace_id, s.parent_id) in by_id
    ]
    assert continued, "no pricing call's server span continues the caller's trace"
    for caller, server in continued:
        assert caller.name == "request pricing", caller
        got = server.attributes["stepwatch.deadline.inbound_budget"]
        assert server.attributes["stepwatch.deadline.source"] == "header", server
        assert 0 < got <= caller.attributes["stepwatch.deadline.budget_sent"], (caller, server)
    print(f"\n{len(rejected)} rejected, {len(not_sent)} not sent, {len(continued)} calls traced")


# -- and every alert resolves once the load has stopped --------------------------------------


def test_every_alert_resolves_after_the_load_stops(loaded: Stack) -> None:
    """Every alert that fired is delivered as resolved once the load has stopped."""
    fired = {
        tuple(sorted(a["labels"].items()))
        for m in loaded.notifications.snapshot()
        for a in m["alerts"]
        if a["status"] == "firing"
    }
    assert {dict(labels)["alertname"] for labels in fired} == set(ALERTS)
    wait_for(
        "every fired alert to resolve",
        lambda: fired <= resolved(loaded),
        timeout=max(5.0, RESOLVE_SECONDS - (time.monotonic() - loaded.load_stopped)),
    )
    took = time.monotonic() - loaded.load_stopped
    loaded.timings["resolved after the load"] = took
    print(f"\ntimings: {loaded.timings}")
