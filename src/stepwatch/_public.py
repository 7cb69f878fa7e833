"""Showing public names under their public module (not the private one defining them)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["publish"]


def publish(namespace: Mapping[str, Any], names: Iterable[str], module: str) -> None:
    """Set ``__module__`` of the classes and functions ``names`` of ``namespace`` to
    ``module`` when a private module defines them, so tracebacks, reprs and
    ``error.type`` show ``stepwatch.X`` rather than ``stepwatch._errors.X``; pickling by
    name still works, as they are attributes of ``module``."""
    for name in names:
        obj = namespace.get(name)
        if obj is None or not getattr(obj, "__module__", "").startswith(module + "._"):
            continue
        with contextlib.suppress(AttributeError, TypeError):
            obj.__module__ = module
