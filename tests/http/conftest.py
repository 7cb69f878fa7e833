"""Fixtures of the HTTP deadline tests: the backend's name, a fresh metrics registry."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from .servers import backend_name


@pytest.fixture
def backend(anyio_backend: Any) -> str:
    """``"asyncio"`` or ``"trio"``: the backend the test (and its servers) run on."""
    return backend_name(anyio_backend)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh prometheus-client registry."""
    return CollectorRegistry()
