"""The shipped rules file is the output of ``dashboards/alerts/render_rules.py``: a team
renders its own runbook and Grafana URLs into it, and the ``--shorten`` transformation
used by the end-to-end test changes windows and ``for:`` durations and nothing else."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import RULES, RULES_RENDERER, RULES_TEMPLATE, renderer

render_rules = renderer()


def alerts(text: str) -> dict[str, dict[str, Any]]:
    """The alerting rules of a rules file, by name."""
    rules = yaml.safe_load(text)
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def all_rules(text: str) -> list[dict[str, Any]]:
    """Every rule of a rules file, in order."""
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


# -- the committed default ---------------------------------------------------------------


def test_committed_rules_are_the_rendered_default() -> None:
    """dashboards/alerts/stepwatch-rules.yml is exactly the template rendered with the
    default URLs (edit the template and re-run the script, never the output)."""
    assert RULES.read_text() == render_rules.render(RULES_TEMPLATE.read_text())


def test_check_option_agrees() -> None:
    """``render_rules.py --check`` exits 0 for the committed default."""
    run = subprocess.run(
        [sys.executable, str(RULES_RENDERER), "--check"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_defaults_point_at_the_example_stack() -> None:
    """The default links are the example service's runbook page and its Grafana."""
    assert render_rules.DEFAULT_RUNBOOK_URL == "http://127.0.0.1:8000/runbook"
    assert render_rules.DEFAULT_GRAFANA_URL == "http://127.0.0.1:3000"
    compose = yaml.safe_load(
        (RULES.parents[2] / "examples" / "service" / "docker-compose.yml").read_text()
    )
    assert "127.0.0.1:3000:3000" in compose["services"]["grafana"]["ports"]
    assert "127.0.0.1:8000:8000" in compose["services"]["app"]["ports"]


# -- a team's own URLs -------------------------------------------------------------------


def test_team_urls_are_rendered_into_every_alert(tmp_path: Path) -> None:
    """With --runbook-url and --grafana-url, every alert links to the team's runbook
    section and Grafana dashboard, and no placeholder is left."""
    out = tmp_path / "rules.yml"
    run = subprocess.run(
        [
            sys.executable,
            str(RULES_RENDERER),
            "--runbook-url",
            "https://wiki.example.com/ops/stepwatch",
            "--grafana-url",
            "https://grafana.example.com/",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert "@" not in text.replace("@example", "")
    found = alerts(text)
    assert found.keys() == alerts(RULES.read_text()).keys()
    for name, alert in found.items():
        annotations = alert["annotations"]
        assert (
            annotations["runbook_url"] == f"https://wiki.example.com/ops/stepwatch#{name.lower()}"
        )
        assert annotations["dashboard_url"].startswith(
            "https://grafana.example.com/d/stepwatch-overview/stepwatch?var-job="
        )


def test_output_is_required_for_custom_urls() -> None:
    """Custom URLs without --output are refused, so the committed default is not
    overwritten by accident."""
    run = subprocess.run(
        [sys.executable, str(RULES_RENDERER), "--grafana-url", "https://g.example.com"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "--output is required" in run.stderr


@pytest.mark.parametrize(
    ("option", "url"),
    [
        pytest.param("runbook_url", "docs/runbook.md", id="relative"),
        pytest.param("runbook_url", "https://wiki.example.com/runbook#top", id="fragment"),
        pytest.param("grafana_url", "https://grafana.example.com/?orgId=1", id="query"),
        pytest.param("grafana_url", 'https://grafana.example.com/"x', id="quote"),
        pytest.param("grafana_url", "ftp://grafana.example.com", id="scheme"),
    ],
)
def test_unusable_urls_are_rejected(option: str, url: str) -> None:
    """A URL an on-call engineer could not click, or that would break the YAML, is refused."""
    with pytest.raises(ValueError, match=option.replace("_", "-")):
        render_rules.render(RULES_TEMPLATE.read_text(), **{option: url})


def test_template_without_placeholders_is_refused() -> None:
    """Rendering a template that lost a placeholder fails instead of shipping no links."""
    text = RULES_TEMPLATE.read_text().replace("@DASHBOARD_URL@", "http://x")
    with pytest.raises(ValueError, match="@DASHBOARD_URL@"):
        render_rules.render(text)


# -- the shortening transformation for tests and demos -----------------------------------


def test_shorten_changes_only_windows_and_for() -> None:
    """Shortened rules have the shipped rules' expressions with every window mapped (and
    nothing else changed), every ``for:`` at the short value, and the same names, labels
    and annotations."""
    shipped = RULES.read_text()
    short = render_rules.shorten(shipped)
    back = {v: k for k, v in render_rules.SHORT_WINDOWS.items()}
    assert len(back) == len(render_rules.SHORT_WINDOWS)  # the mapping can be undone
    originals, shortened = all_rules(shipped), all_rules(short)
    assert len(originals) == len(shortened)
    assert re.findall(r"\[(\w+)\]", short)
    for original, rule in zip(originals, shortened, strict=True):
        assert all(w in back for w in re.findall(r"\[(\w+)\]", rule["expr"]))
        restored = re.sub(r"\[(\w+)\]", lambda m: f"[{back[m.group(1)]}]", rule["expr"])
        assert restored == original["expr"]
        if "for" in original:
            assert rule["for"] == render_rules.SHORT_FOR
        rest = {k: v for k, v in rule.items() if k not in ("expr", "for")}
        assert rest == {k: v for k, v in original.items() if k not in ("expr", "for")}


def test_shorten_keeps_the_window_order() -> None:
    """Short windows keep the order of the long ones (5m < 30m < 1h < 6h)."""
    seconds = {"s": 1, "m": 60, "h": 3600}

    def s(value: str) -> int:
        return int(value[:-1]) * seconds[value[-1]]

    pairs = sorted(render_rules.SHORT_WINDOWS.items(), key=lambda kv: s(kv[0]))
    assert [s(v) for _, v in pairs] == sorted(s(v) for _, v in pairs)
    assert all(s(short) < s(long) for long, short in pairs)


def test_shorten_refuses_an_unknown_window() -> None:
    """A window the mapping does not know fails loudly instead of staying long."""
    with pytest.raises(ValueError, match=r"\[2h\]"):
        render_rules.shorten("expr: rate(x[2h])\n")


def test_shorten_cli_writes_loadable_rules(tmp_path: Path) -> None:
    """``--shorten -o FILE`` writes shortened rules marked as never to be deployed."""
    out = tmp_path / "short.yml"
    run = subprocess.run(
        [sys.executable, str(RULES_RENDERER), "--shorten", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert text.startswith("# SHORTENED") and "Never deploy" in text.splitlines()[0]
    assert "[5m]" not in text and "for: 10m" not in text
    assert alerts(text).keys() == alerts(RULES.read_text()).keys()


def test_check_option_reports_an_outdated_file(tmp_path: Path) -> None:
    """``--check`` exits 1 when the rules file no longer matches the template (a hand
    edit, or a template change that was not re-rendered)."""
    for source in (RULES_RENDERER, RULES_TEMPLATE):
        (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("for: 2m", "for: 1m", 1))
    script = tmp_path / RULES_RENDERER.name
    run = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert run.returncode == 1
    assert "out of date" in run.stderr
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
    run = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
