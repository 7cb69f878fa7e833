"""The checkout and the installed libraries, as the reports describe them."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the benchmark subprocesses and ``git`` run there)."""


def version(name: str) -> str:
    """The installed version of the distribution ``name``, or "not installed"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
