"""Fixtures of the reliability suite."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _collect_garbage_after_module() -> Iterator[None]:
    """Pay for the garbage these heavy modules leave here, not in a later timing test."""
    yield
    gc.collect()
