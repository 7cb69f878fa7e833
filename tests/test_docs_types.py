"""Every Python example in the README files and docs/ type-checks under ``mypy --strict``.

Each fenced ``python`` block becomes one module of a temporary directory, and mypy checks
them all in one run. HTML comments right before a block (invisible on the rendered page)
adjust this, and are meant to stay rare:

* ``<!-- type-check context: ... -->`` — code put before the block, for the names an
  excerpt assumes the reader has (``executor: FlowExecutor``); it is type-checked too.
* ``<!-- not type-checked: reason -->`` — an illustration that cannot type-check.
* ``<!-- type-check xfail[code, ...]: reason -->`` — a block known to fail today with
  errors of those mypy codes only; the test fails on any other error, and once the block
  passes, so the marker goes with the fix.

Examples may ``await`` at top level, as they would inside an async function.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted(p for p in ROOT.glob("*/README.md") if not p.parent.name.startswith(".")),
    *sorted(ROOT.glob("examples/*/README.md")),
]

MYPY_CONFIG = """\
[mypy]
strict = True
python_version = 3.11
enable_error_code = ignore-without-code, truthy-bool
warn_unreachable = True
disable_error_code = top-level-await
"""

FENCE = re.compile(r"^(?P<indent>[ \t]*)```python\n(?P<code>.*?)^(?P=indent)```$", re.M | re.S)
MARKER = re.compile(
    r"\s*(?P<kind>type-check context|not type-checked|type-check xfail)"
    r"(?:\[(?P<codes>[\w\-, ]+)\])?:(?P<text>.*)",
    re.S,
)


@dataclass(frozen=True)
class Block:
    """One ``python`` block of a markdown file, as a module to check."""

    doc: Path
    line: int  # of the block's first line of code, in the markdown file
    code: str
    context: str = ""
    skip: str = ""
    xfail: str = ""
    xfail_codes: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def module(self) -> str:
        stem = re.sub(r"\W", "_", str(self.doc.relative_to(ROOT).with_suffix(""))).lower()
        return f"{stem}_l{self.line}"

    def source(self) -> str:
        return self.context + self.code

    def doc_line(self, module_line: int) -> str:
        """Where line ``module_line`` of the module is: in the block, or in its context."""
        offset = self.context.count("\n")
        if module_line <= offset:
            return f"{self.id} (context line {module_line})"
        return f"{self.doc.relative_to(ROOT)}:{self.line + module_line - offset - 1}"


def markers(before: str, where: str) -> dict[str, str]:
    """The markers in the HTML comments right before a block (only blank lines between)."""
    found: dict[str, str] = {}
    while (before := before.rstrip()).endswith("-->"):
        start = before.rfind("<!--")
        comment = before[start + 4 : -3]
        marker = MARKER.fullmatch(comment)
        if marker is None:
            if "type-check" in comment:
                raise ValueError(f"{where}: unknown type-check marker {comment!r}")
            break
        kind, text, codes = marker.group("kind", "text", "codes")
        if (codes is not None) != (kind == "type-check xfail"):
            raise ValueError(f"{where}: only 'type-check xfail[code, ...]:' names error codes")
        if codes is not None:
            found["codes"] = codes
        if kind == "type-check context":
            found[kind] = textwrap.dedent(text).strip("\n") + "\n"
        elif len(text.strip()) < 10:
            raise ValueError(f"{where}: '{kind}:' needs a reason")
        else:
            found[kind] = " ".join(text.split())
        before = before[:start]
    return found


def blocks() -> list[Block]:
    """Every ``python`` block of the docs, with its markers."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start("code")) + 1
            where = f"{doc.relative_to(ROOT)}:{line}"
            marks = markers(text[: match.start()], where)
            found.append(
                Block(
                    doc,
                    line,
                    textwrap.dedent(match.group("code")),
                    context=marks.get("type-check context", ""),
                    skip=marks.get("not type-checked", ""),
                    xfail=marks.get("type-check xfail", ""),
                    xfail_codes=frozenset(
                        c.strip() for c in marks.get("codes", "").split(",") if c.strip()
                    ),
                )
            )
    return found


BLOCKS = blocks()


class KnownFailure(AssertionError):
    """The errors an xfail marker announces, and only those."""


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy's errors for every block to check (one mypy run), by block id."""
    root = tmp_path_factory.mktemp("doc_examples")
    (root / "mypy.ini").write_text(MYPY_CONFIG)
    checked = {block.module: block for block in BLOCKS if not block.skip}
    for name, block in checked.items():
        (root / f"{name}.py").write_text(block.source())
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "mypy.ini",
            "--cache-dir",
            ".cache",
            *(f"{name}.py" for name in checked),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    errors: dict[str, list[str]] = {block.id: [] for block in checked.values()}
    for line in run.stdout.splitlines():
        match = re.match(r"(\w+)\.py:(\d+): error: (.*)", line)  # notes only explain
        if match is None:
            continue
        block = checked[match.group(1)]
        errors[block.id].append(f"{block.doc_line(int(match.group(2)))}: {match.group(3)}")
    assert run.returncode in (0, 1), run.stdout + run.stderr  # 2: mypy itself failed
    return errors


def test_examples_are_found() -> None:
    """The extraction finds the README's usage example, and exceptions stay rare."""
    readme = [b for b in BLOCKS if b.doc.name == "README.md" and b.doc.parent == ROOT]
    assert any("anyio.run(main)" in b.code for b in readme)
    exceptions = [b.id for b in BLOCKS if b.skip or b.xfail]
    assert len(exceptions) <= max(2, len(BLOCKS) // 10), exceptions


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "block",
    [
        pytest.param(
            b,
            id=b.id,
            marks=(
                [pytest.mark.skip(reason=b.skip)]
                if b.skip
                else [pytest.mark.xfail(reason=b.xfail, strict=True, raises=KnownFailure)]
                if b.xfail
                else []
            ),
        )
        for b in BLOCKS
    ],
)
def test_example_type_checks(block: Block, mypy_errors: dict[str, list[str]]) -> None:
    """A docs example passes ``mypy --strict`` (with its context, if it has one)."""
    errors = mypy_errors[block.id]
    if block.xfail and errors:
        unexpected = [
            e for e in errors if not e.endswith(tuple(f"[{c}]" for c in block.xfail_codes))
        ]
        assert unexpected == []
        raise KnownFailure("\n".join(errors))
    assert errors == []
