"""Module-level (picklable) CPU-bound functions for the process-isolation tests."""

from __future__ import annotations

import os
import time


def spin(seconds: float) -> int:
    """Burn CPU for ``seconds``; return this process's pid."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return os.getpid()


def write_pid_then_spin(path: str) -> None:
    """Record this worker's pid in ``path``, then spin for a minute."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    spin(60)
