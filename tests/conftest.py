"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

from typing import Any

import pytest
from trio.testing import MockClock

# Default: real clocks on both backends.
REAL_BACKENDS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param("trio", id="trio"),
]


def virtual_time_backends() -> list[Any]:
    """asyncio on its real clock, trio on ``MockClock(autojump_threshold=0)``.

    Use it in modules whose tests are about timeouts: on trio they take no real time. Do not
    use it for tests that wait on worker threads (the mock clock jumps while a thread runs).
    """
    return [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mockclock"),
    ]


@pytest.fixture(params=REAL_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param
