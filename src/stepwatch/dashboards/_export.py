"""Write the shipped dashboard, alert rules and runbook to a directory.

In a wheel the files live in this package (``data/``, put there by the build's
``force-include``); in a source checkout, and so in an editable install, they are read
from the repository (``dashboards/``, ``docs/runbook.md``), which is the one source of
truth. :data:`FILES` lists them as they are laid out in an export.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import sys
import types
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

from .._text import listing

__all__ = ["FILES", "export", "main"]

_SOURCES: Final[Mapping[str, str]] = {
    "README.md": "dashboards/README.md",
    "stepwatch.json": "dashboards/stepwatch.json",
    "provisioning/dashboards/stepwatch.yml": "dashboards/provisioning/dashboards/stepwatch.yml",
    "provisioning/datasources/prometheus.yml": "dashboards/provisioning/datasources/prometheus.yml",
    "provisioning/datasources/jaeger.yml": "dashboards/provisioning/datasources/jaeger.yml",
    "alerts/stepwatch-rules.yml": "dashboards/alerts/stepwatch-rules.yml",
    "alerts/stepwatch-rules.template.yml": "dashboards/alerts/stepwatch-rules.template.yml",
    "alerts/stepwatch-rules.test.yml": "dashboards/alerts/stepwatch-rules.test.yml",
    "alerts/render_rules.py": "dashboards/alerts/render_rules.py",
    "runbook.md": "docs/runbook.md",
}
"""Path in an export (and under ``data/`` in the wheel) → path in the repository."""

FILES: Final[tuple[str, ...]] = tuple(_SOURCES)
"""The files :func:`export` writes, relative to its directory."""

_RULES: Final = "alerts/stepwatch-rules.yml"
_TEMPLATE: Final = "alerts/stepwatch-rules.template.yml"
_RULE_TESTS: Final = "alerts/stepwatch-rules.test.yml"
_RENDERER: Final = "alerts/render_rules.py"


def _sources() -> dict[str, Traversable]:
    """Where each file is read from: the package's ``data/`` (a wheel) or the checkout."""
    data = resources.files(__package__ or "stepwatch.dashboards").joinpath("data")
    if data.is_dir():
        found: dict[str, Traversable] = {name: data.joinpath(name) for name in _SOURCES}
    else:  # a source checkout (editable install): the repository's own files
        root = Path(__file__).resolve().parents[3]
        found = {name: root / path for name, path in _SOURCES.items()}
    missing = [name for name, source in found.items() if not source.is_file()]
    if missing:
        raise FileNotFoundError(
            "stepwatch's dashboard files are missing from this installation "
            f"({', '.join(missing)}); reinstall stepwatch from a wheel or a checkout"
        )
    return found


def _renderer(source: Traversable) -> Any:
    """The shipped ``render_rules.py`` as a module (it is a script, not part of the API)."""
    module = types.ModuleType("stepwatch_render_rules")
    module.__file__ = str(source)
    exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), module.__dict__)
    return module


def _rendered(
    sources: Mapping[str, Traversable], runbook_url: str | None, grafana_url: str | None
) -> dict[str, bytes]:
    """The rules and their promtool tests with the given links (ValueError for a bad URL)."""
    render = _renderer(sources[_RENDERER])
    runbook = runbook_url or render.DEFAULT_RUNBOOK_URL
    grafana = grafana_url or render.DEFAULT_GRAFANA_URL
    rules = render.render(
        sources[_TEMPLATE].read_text(encoding="utf-8"),
        runbook_url=runbook,
        grafana_url=grafana,
    )
    # the promtool tests expect the default links in the annotations: retarget them, so
    # that `promtool test rules` passes on the exported rules as on the shipped ones
    tests = (
        sources[_RULE_TESTS]
        .read_text(encoding="utf-8")
        .replace(f'"{render.DEFAULT_RUNBOOK_URL}#', f'"{runbook}#')
        .replace(
            f'"{render.dashboard_url(render.DEFAULT_GRAFANA_URL)}',
            f'"{render.dashboard_url(grafana)}',
        )
    )
    return {_RULES: rules.encode(), _RULE_TESTS: tests.encode()}


_LINK: Final = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_PAGES: Final = ("README.md", "runbook.md")


def _relinked(name: str, text: str) -> str:
    """An exported page with its relative links as they resolve in the export: to a file it
    ships, retargeted; to a page it does not (the docs), the page named, unlinked. Its
    commands are given from the export's directory (``alerts/render_rules.py``)."""
    here = posixpath.dirname(_SOURCES[name])
    exported = {path: name for name, path in _SOURCES.items()}

    def retarget(match: re.Match[str]) -> str:
        label, target = match.groups()
        if target.startswith("#") or re.match(r"[a-z][a-z0-9+.-]*:", target):
            return match.group(0)  # an anchor on the page, or an absolute URL
        path, hash_, anchor = target.partition("#")
        source = posixpath.normpath(posixpath.join(here, path))
        if source in exported:
            moved = posixpath.relpath(exported[source], posixpath.dirname(name) or ".")
            label = moved if label == source else label  # "docs/runbook.md" -> "runbook.md"
            return f"[{label}]({moved}{hash_}{anchor})"
        named = f"stepwatch's `{source}`"
        same = posixpath.basename(label.strip("`")) == posixpath.basename(source)
        return named if same else f"{label} ({named})"

    text = _LINK.sub(retarget, text)
    return text.replace("dashboards/alerts/render_rules.py", "alerts/render_rules.py")


def export(
    directory: str | os.PathLike[str],
    *,
    runbook_url: str | None = None,
    grafana_url: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write the dashboard, its provisioning, the alert rules (template, renderer, promtool
    tests) and the runbook to ``directory`` (created if needed), laid out as :data:`FILES`.

    Without URLs the files are the shipped ones, byte for byte, but for the links and
    commands of the two pages (``README.md``, ``runbook.md``), given as they resolve in the
    export (a page of the docs that is not exported is named, unlinked). ``runbook_url`` (where your
    team publishes ``runbook.md``) and ``grafana_url`` (your Grafana's base URL) render the
    alert rules' ``runbook_url`` and ``dashboard_url`` annotations, as
    ``alerts/render_rules.py`` does; the promtool tests are adjusted to match.

    Returns:
        The paths written, in :data:`FILES` order.

    Raises:
        ValueError: a URL that is not an absolute http(s) URL without query or fragment.
        FileExistsError: a file to write exists already and ``overwrite`` is false
            (nothing is written then).
        FileNotFoundError: this installation lacks the files.
    """
    sources = _sources()
    content = {name: source.read_bytes() for name, source in sources.items()}
    for page in _PAGES:
        content[page] = _relinked(page, content[page].decode("utf-8")).encode("utf-8")
    if runbook_url is not None or grafana_url is not None:
        content.update(_rendered(sources, runbook_url, grafana_url))
    target = Path(directory)
    paths = [target / name for name in FILES]
    if not overwrite:
        existing = [name for name, path in zip(FILES, paths, strict=True) if path.exists()]
        if existing:
            raise FileExistsError(
                f"{target} already has {listing(existing, 1)}; nothing was written (pass "
                "overwrite=True, or --force, to replace them)"
            )
    for name, path in zip(FILES, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content[name])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stepwatch.dashboards``: ``export DIR [--runbook-url URL] [--grafana-url
    URL] [--force]`` writes the files (and prints their paths); ``list`` names them."""
    parser = argparse.ArgumentParser(
        prog="python -m stepwatch.dashboards",
        description="Write stepwatch's Grafana dashboard, Prometheus alert rules and "
        "runbook to a directory.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    to = commands.add_parser("export", help="write the files to DIR")
    to.add_argument("directory", metavar="DIR", help="created if missing")
    to.add_argument("--runbook-url", help="where your team publishes runbook.md")
    to.add_argument("--grafana-url", help="your Grafana's base URL")
    to.add_argument("--force", action="store_true", help="overwrite files that exist")
    commands.add_parser("list", help="name the files an export writes")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(FILES))
        return 0
    try:
        written = export(
            args.directory,
            runbook_url=args.runbook_url,
            grafana_url=args.grafana_url,
            overwrite=args.force,
        )
    except ValueError as exc:
        to.error(str(exc))
    except OSError as exc:
        print(f"python -m stepwatch.dashboards: {exc}", file=sys.stderr)
        return 1
    print("\n".join(str(path) for path in written))
    return 0
