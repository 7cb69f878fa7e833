"""The README's stepwatch.http example is real code that works against a real server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stepwatch import Flow, FlowExecutor, Request
from stepwatch.http import JsonRpcClient

from .servers import running

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def test_readme_example_serves_and_calls(backend: str) -> None:
    """The README block defines a client, a flow and an app; the flow gets the app's answer."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"### Deadlines across services\n.*?```python\n(.*?)```", readme, re.S)
    assert block is not None
    namespace: dict[str, Any] = {"Flow": Flow, "FlowExecutor": FlowExecutor, "Request": Request}
    exec(block.group(1), namespace)
    await namespace["pricing"].aclose()
    flow = namespace["flow"]
    async with running(namespace["app"], backend) as url, JsonRpcClient(url) as client:
        executor = FlowExecutor(handlers=client.handlers("pricing.quote"), metrics=False)
        result = await executor.run(flow)
    assert result["price"] == {"price": 19.9}
