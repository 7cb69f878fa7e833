#!/usr/bin/env python3
"""Render stepwatch's Prometheus alert rules with your runbook and Grafana URLs.

The rules are written once, in ``stepwatch-rules.template.yml`` beside this script; every
alert there has a ``runbook_url`` and a ``dashboard_url`` annotation built from two
placeholders. This script fills them in (standard library only, Python 3.11+)::

    python3 dashboards/alerts/render_rules.py \\
        --runbook-url https://wiki.example.com/ops/stepwatch-runbook \\
        --grafana-url https://grafana.example.com \\
        --output /etc/prometheus/rules/stepwatch-rules.yml

* ``--runbook-url``: where your team publishes ``docs/runbook.md`` (a wiki page, your
  repository browser, ...). Each alert links to ``<runbook-url>#<alert name in lower case>``,
  the anchor of its section.
* ``--grafana-url``: the base URL of your Grafana. Each alert links to the stepwatch
  dashboard (uid ``stepwatch-overview``) as
  ``<grafana-url>/d/stepwatch-overview/stepwatch?var-job=...&var-flow=...&var-step=...``,
  with the alert's job, flow and (for step alerts) step selected.

Without arguments it re-renders the committed default, ``stepwatch-rules.yml``, whose
links point at the example stack of ``examples/service/`` (the service serves the runbook
at ``http://127.0.0.1:8000/runbook``, Grafana runs on ``http://127.0.0.1:3000``). After
editing the template, run it and commit both files; the test suite checks they agree.
``--check`` only reports whether the committed default is up to date.

``--shorten`` also rewrites every range window and every ``for:`` duration (see
:data:`SHORT_WINDOWS`, :data:`SHORT_FOR`), so a person or a test sees every alert fire and
resolve within minutes instead of hours. The expressions, thresholds, labels and
annotations stay exactly the shipped ones. Never deploy shortened rules.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "stepwatch-rules.template.yml"
DEFAULT_OUTPUT = HERE / "stepwatch-rules.yml"

DEFAULT_RUNBOOK_URL = "http://127.0.0.1:8000/runbook"
"""The example service (examples/service/app.py) serves docs/runbook.md there."""
DEFAULT_GRAFANA_URL = "http://127.0.0.1:3000"
"""Grafana of examples/service/docker-compose.yml."""

DASHBOARD_UID = "stepwatch-overview"
DASHBOARD_SLUG = "stepwatch"

RUNBOOK_PLACEHOLDER = "@RUNBOOK_URL@"
DASHBOARD_PLACEHOLDER = "@DASHBOARD_URL@"

SHORT_WINDOWS = {"5m": "20s", "30m": "40s", "1h": "1m", "6h": "90s"}
"""Range windows of the shipped rules → the ``--shorten`` ones (order kept: 5m < 30m < 1h <
6h). With a 1 s scrape interval even 20 s holds 20 samples, enough for ``rate()``."""
SHORT_FOR = "10s"
"""Every ``for:`` duration under ``--shorten``."""

_RANGE = re.compile(r"\[(\d+[smhdwy])\]")
_FOR = re.compile(r"^(?P<indent>\s+)for:\s*(?P<value>\S+)\s*$", re.M)

__all__ = [
    "DEFAULT_GRAFANA_URL",
    "DEFAULT_RUNBOOK_URL",
    "SHORT_FOR",
    "SHORT_WINDOWS",
    "dashboard_url",
    "main",
    "render",
    "shorten",
]


def _check_url(option: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{option} must be an absolute http(s) URL; got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{option} must have no query or #fragment; got {url!r}")
    if re.search(r'["\\\s{}]', url):
        raise ValueError(f"{option} must not contain quotes, backslashes, spaces or braces")
    return url


def dashboard_url(grafana_url: str) -> str:
    """The stepwatch dashboard's URL on the Grafana at ``grafana_url`` (no variables)."""
    base = _check_url("--grafana-url", grafana_url).rstrip("/")
    return f"{base}/d/{DASHBOARD_UID}/{DASHBOARD_SLUG}"


def render(
    template: str,
    *,
    runbook_url: str = DEFAULT_RUNBOOK_URL,
    grafana_url: str = DEFAULT_GRAFANA_URL,
) -> str:
    """The rules file: ``template`` with both URLs filled in and a "generated" header.

    Raises:
        ValueError: a URL that is not absolute http(s), has a query or fragment, or
            characters that would break the YAML; or a template without the placeholders.
    """
    runbook = _check_url("--runbook-url", runbook_url)
    dashboard = dashboard_url(grafana_url)
    for placeholder in (RUNBOOK_PLACEHOLDER, DASHBOARD_PLACEHOLDER):
        if placeholder not in template:
            raise ValueError(f"the template has no {placeholder} placeholder")
    header = (
        "# GENERATED FILE, do not edit: rendered by dashboards/alerts/render_rules.py from\n"
        "# dashboards/alerts/stepwatch-rules.template.yml (edit the template, then re-run).\n"
        f"# runbook: {runbook}\n"
        f"# dashboard: {dashboard}\n"
        "#\n"
    )
    body = template.replace(RUNBOOK_PLACEHOLDER, runbook)
    return header + body.replace(DASHBOARD_PLACEHOLDER, dashboard)


def shorten(rules: str, windows: dict[str, str] | None = None, for_: str = SHORT_FOR) -> str:
    """``rules`` with every range window ``[5m]`` mapped through ``windows`` and every
    ``for:`` set to ``for_``; nothing else changes.

    Raises:
        ValueError: a range window the mapping does not know (add it to the mapping: an
            unshortened window would keep an alert from firing or resolving in time).
    """
    windows = SHORT_WINDOWS if windows is None else windows

    def window(match: re.Match[str]) -> str:
        found = match.group(1)
        if found not in windows:
            raise ValueError(f"no short window for [{found}]; known: {sorted(windows)}")
        return f"[{windows[found]}]"

    text = _RANGE.sub(window, rules)
    text = _FOR.sub(lambda m: f"{m.group('indent')}for: {for_}", text)
    return (
        "# SHORTENED for tests and demos (render_rules.py --shorten): windows "
        + ", ".join(f"{k}->{v}" for k, v in windows.items())
        + f", every for: {for_}. Never deploy.\n"
        + text
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description="Render stepwatch's alert rules with your runbook and Grafana URLs."
    )
    parser.add_argument("--runbook-url", help=f"runbook page (default {DEFAULT_RUNBOOK_URL})")
    parser.add_argument("--grafana-url", help=f"Grafana base URL (default {DEFAULT_GRAFANA_URL})")
    parser.add_argument(
        "-o", "--output", help="file to write ('-' = stdout); default: the committed default"
    )
    parser.add_argument(
        "--shorten", action="store_true", help="test/demo windows and for: durations"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed default is out of date"
    )
    args = parser.parse_args(argv)
    custom = args.runbook_url or args.grafana_url or args.shorten
    if args.check and (custom or args.output):
        parser.error("--check takes no other option: it checks the committed default")
    if custom and not args.output:
        parser.error("--output is required with --runbook-url, --grafana-url or --shorten")
    try:
        text = render(
            TEMPLATE.read_text(),
            runbook_url=args.runbook_url or DEFAULT_RUNBOOK_URL,
            grafana_url=args.grafana_url or DEFAULT_GRAFANA_URL,
        )
        if args.shorten:
            text = shorten(text)
    except ValueError as exc:
        parser.error(str(exc))
    if args.check:
        current = DEFAULT_OUTPUT.read_text() if DEFAULT_OUTPUT.exists() else ""
        if current != text:
            print(f"{DEFAULT_OUTPUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    if args.output == "-":
        sys.stdout.write(text)
    else:
        out = Path(args.output) if args.output else DEFAULT_OUTPUT
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
