"""Handlers shared by the tracing and logging tests."""

from __future__ import annotations

from typing import Any

import anyio


class Boom(Exception):
    """A backend error raised by the test handlers."""


async def boom(params: Any) -> Any:
    """Fail with :class:`Boom` after 20 ms."""
    await anyio.sleep(0.02)
    raise Boom("backend exploded")
