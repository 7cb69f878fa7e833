"""Shared fixtures: every async test runs on asyncio and on trio.

Mark a test (or a module, with ``pytestmark``) ``virtual_time`` to run its trio variant on
``trio.testing.MockClock(autojump_threshold=0)``: sleeps and deadlines then take no real
time. Don't mark tests that wait on worker threads: the mock clock jumps while a thread runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from trio.testing import MockClock


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio" and request.node.get_closest_marker("virtual_time"):
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return request.param


@pytest.fixture(autouse=True)
def _unconfigured_structlog() -> Iterator[None]:
    """Every test starts and ends with structlog unconfigured (capture_logs configures it
    for good), so a test sees the logging route an application without structlog gets."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
