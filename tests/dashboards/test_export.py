"""``python -m stepwatch.dashboards export DIR`` writes the repository's dashboard, alert
rules and runbook, byte for byte, or with a team's links rendered into the rules and
their promtool tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stepwatch import dashboards
from stepwatch.dashboards._export import _SOURCES

from .helpers import ROOT, RULE_TESTS, RULES_TEMPLATE, binary, renderer

RUNBOOK_URL = "https://wiki.example.com/ops/stepwatch-runbook"
GRAFANA_URL = "https://grafana.example.com"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m stepwatch.dashboards`` with ``args``."""
    return subprocess.run(
        [sys.executable, "-m", "stepwatch.dashboards", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def annotations(tests_file: Path) -> list[str]:
    """Every expected ``runbook_url`` and ``dashboard_url`` of a promtool tests file."""
    urls = []
    for case in yaml.safe_load(tests_file.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            for alert in check["exp_alerts"]:
                notes = alert.get("exp_annotations", {})
                urls += [notes[k] for k in ("runbook_url", "dashboard_url") if k in notes]
    return urls


def test_every_dashboard_file_is_shipped() -> None:
    """Every file under dashboards/ (but the schemas the tests use) is in the export list."""
    shipped = set(_SOURCES.values())
    on_disk = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "dashboards").rglob("*")
        if path.is_file() and "schema" not in path.parts and "__pycache__" not in path.parts
    }
    assert on_disk <= shipped
    assert "docs/runbook.md" in shipped  # the page the rules' runbook_url links point to


def test_export_writes_the_repository_files(tmp_path: Path) -> None:
    """Without links, every exported file but the two pages has the same bytes as its
    repository file; the pages differ only in their links and commands."""
    written = dashboards.export(tmp_path / "out")
    assert written == [tmp_path / "out" / name for name in dashboards.FILES]
    for name, source in _SOURCES.items():
        exported, shipped = (tmp_path / "out" / name).read_text(), (ROOT / source).read_text()
        if name in ("README.md", "runbook.md"):  # line for line, but links and commands
            pairs = list(zip(exported.splitlines(), shipped.splitlines(), strict=True))
            changed = [new for new, old in pairs if new != old]
            assert all("](" in old or "render_rules.py" in old for new, old in pairs if new != old)
            assert changed, name  # each page has links to retarget
        else:
            assert exported == shipped, name


def test_exported_pages_link_only_to_exported_files(tmp_path: Path) -> None:
    """Every relative link of the exported README and runbook resolves to a file of the
    export (the repository's docs pages are named, not linked), and the commands run from
    the export's directory."""
    dashboards.export(tmp_path)
    for page in ("README.md", "runbook.md"):
        text = (tmp_path / page).read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith("#") or re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue
            assert (tmp_path / page).parent.joinpath(target.split("#")[0]).is_file(), target
        assert "dashboards/alerts/render_rules.py" not in text
    assert "python3 alerts/render_rules.py" in (tmp_path / "README.md").read_text()


def test_export_renders_the_links(tmp_path: Path) -> None:
    """With links, the rules are the template rendered with them, and the promtool tests
    expect those links instead of the example stack's."""
    dashboards.export(tmp_path, runbook_url=RUNBOOK_URL, grafana_url=GRAFANA_URL)
    render = renderer()
    expected = render.render(
        RULES_TEMPLATE.read_text(), runbook_url=RUNBOOK_URL, grafana_url=GRAFANA_URL
    )
    assert (tmp_path / "alerts" / "stepwatch-rules.yml").read_text() == expected
    urls = annotations(tmp_path / "alerts" / "stepwatch-rules.test.yml")
    assert len(urls) == len(annotations(RULE_TESTS)) > 0
    dashboard = render.dashboard_url(GRAFANA_URL)
    assert all(u.startswith((RUNBOOK_URL + "#", dashboard + "?")) for u in urls), urls
    assert (tmp_path / "stepwatch.json").read_bytes() == (
        ROOT / "dashboards" / "stepwatch.json"
    ).read_bytes()


@pytest.mark.prometheus
def test_exported_rules_pass_their_promtool_tests(tmp_path: Path) -> None:
    """``promtool test rules`` passes on an export rendered with a team's links."""
    dashboards.export(tmp_path, runbook_url=RUNBOOK_URL, grafana_url=GRAFANA_URL)
    run = subprocess.run(
        [binary("promtool"), "test", "rules", "stepwatch-rules.test.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path / "alerts",
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_export_never_overwrites_unless_asked(tmp_path: Path) -> None:
    """An export over existing files writes nothing and raises; ``overwrite`` replaces."""
    (tmp_path / "alerts").mkdir()
    (tmp_path / "alerts" / "stepwatch-rules.yml").write_text("mine")
    with pytest.raises(FileExistsError, match=r"stepwatch-rules\.yml"):
        dashboards.export(tmp_path)
    assert not (tmp_path / "stepwatch.json").exists()
    assert (tmp_path / "alerts" / "stepwatch-rules.yml").read_text() == "mine"
    dashboards.export(tmp_path, overwrite=True)
    assert (tmp_path / "alerts" / "stepwatch-rules.yml").read_bytes() == (
        ROOT / "dashboards" / "alerts" / "stepwatch-rules.yml"
    ).read_bytes()


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"runbook_url": "ftp://wiki/runbook"}, id="scheme"),
        pytest.param({"grafana_url": "https://grafana.example.com/?orgId=1"}, id="query"),
    ],
)
def test_export_rejects_bad_links(tmp_path: Path, kwargs: dict[str, str]) -> None:
    """A link the rules cannot carry is a ValueError, and nothing is written."""
    with pytest.raises(ValueError, match="must"):
        dashboards.export(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_command_line(tmp_path: Path) -> None:
    """``list`` names the files, ``export`` writes them and prints their paths, exits 1
    over existing files and 2 for a bad link; ``--force`` overwrites."""
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == list(dashboards.FILES)

    out = tmp_path / "out"
    run = cli("export", str(out), "--runbook-url", RUNBOOK_URL, "--grafana-url", GRAFANA_URL)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(out / name) for name in dashboards.FILES]
    assert f"{RUNBOOK_URL}#" in (out / "alerts" / "stepwatch-rules.yml").read_text()

    again = cli("export", str(out))
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert cli("export", str(out), "--force").returncode == 0
    assert f"{RUNBOOK_URL}#" not in (out / "alerts" / "stepwatch-rules.yml").read_text()

    bad = cli("export", str(tmp_path / "bad"), "--grafana-url", "grafana:3000")
    assert bad.returncode == 2
    assert "--grafana-url must be an absolute http(s) URL" in bad.stderr
