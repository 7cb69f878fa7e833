"""Examples in the README and in docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import stepwatch

ROOT = Path(__file__).resolve().parents[1]


def test_readme_usage_example_runs() -> None:
    """The README's usage example runs and reports the slow child as pending."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Usage\n\n(?:<!--.*?-->\n)?```python\n(.*?)```", readme, re.S)
    assert block is not None
    proc = subprocess.run(
        [sys.executable, "-c", block.group(1)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = proc.stdout.splitlines()  # only what the example prints: stepwatch adds nothing
    assert len(out) == 4, proc.stdout
    assert proc.stderr == ""
    assert out[0].startswith("parallel step 'enrich' timed out after 0.2")
    assert "still pending: recommendations" in out[0]
    assert out[1] == (
        "{'inventory': {'sku': 'A-1', 'stock': 12}, 'pricing': {'sku': 'A-1', 'price': 19.9}}"
    )
    assert out[2] == "('recommendations',)"
    assert out[3] == "deadline"


@pytest.mark.parametrize("module", [stepwatch], ids=lambda m: m.__name__)
def test_docstring_examples(module: object) -> None:
    """Docstring examples (doctests) of the public names hold."""
    failures, tried = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert tried > 0
    assert failures == 0


def test_readme_validate_at_startup_example() -> None:
    """The README's lifespan example raises the missing handler's ValidationError when the
    service starts, and starts once the handler is registered."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"### Validate at startup\n.*?```python\n(.*?)```", readme, re.S)
    assert block is not None
    assert "executor.validate(flow)" in block.group(1)
    executor = stepwatch.FlowExecutor(metrics=False, tracing=False, logging=False)
    flow = stepwatch.Flow("page", [stepwatch.Request("price", "pricing")])
    namespace: dict[str, Any] = {"executor": executor, "flow": flow}
    exec(block.group(1), namespace)

    async def start() -> None:
        async with namespace["lifespan"](object()):
            pass

    with pytest.raises(stepwatch.ValidationError, match="no handler registered for method"):
        anyio.run(start)
    executor.add_handler("pricing", lambda params: 19.9)
    anyio.run(start)
