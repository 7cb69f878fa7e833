"""The repository's docs stand on their own: they cite no notes outside the repository,
and every relative link (and the heading it points to) exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SKIP_DIRS = {
    ".git",
    ".venv",
    ".tox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "__pycache__",
    "build",
    "dist",
    "node_modules",
}
TEXT_SUFFIXES = {
    ".md",
    ".py",
    ".toml",
    ".ini",
    ".cfg",
    ".txt",
    ".yml",
    ".yaml",
    ".json",
    ".sh",
    ".html",
    "",
}
INTERNAL_NOTES = "DESIGN" + ".md"  # the team's notes, not part of the project (spelt so
# that this file does not match itself)

MARKDOWN = sorted(
    path
    for path in ROOT.rglob("*.md")
    if not SKIP_DIRS.intersection(path.relative_to(ROOT).parts) and "egg-info" not in str(path)
)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")


def repository_files() -> list[Path]:
    """Every text file of the repository (no virtual environments, caches or builds)."""
    found = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if SKIP_DIRS.intersection(rel.parts) or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES and not any(p.endswith(".egg-info") for p in rel.parts):
            found.append(path)
    return found


def test_no_file_cites_the_internal_design_notes() -> None:
    """No file in the repository refers to the team's internal design notes: the design
    is docs/design.md."""
    citing = [
        str(path.relative_to(ROOT))
        for path in repository_files()
        if INTERNAL_NOTES in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert citing == []
    assert (ROOT / "docs" / "design.md").is_file()


def anchors(markdown: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    found = set()
    in_code = False
    for line in markdown.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#{1,6} (.*)", line)):
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


@pytest.mark.parametrize("markdown", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(markdown: Path) -> None:
    """Every relative link of a markdown file names an existing file, and an anchor into a
    markdown file names one of its headings."""
    broken = []
    text = re.sub(r"```.*?```", "", markdown.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (markdown.parent / path).resolve() if path else markdown
        missing_heading = anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)
        if not resolved.exists() or missing_heading:
            broken.append(target)
    assert broken == []
