"""Built-in step executors, one module per step type.

Each follows the :class:`stepwatch.StepExecutor` protocol and contains no telemetry and no
deadline code: the :class:`FlowExecutor` wraps every registered executor in the deadline
guard and the telemetry decorators.
"""

from __future__ import annotations

from .._protocols import StepExecutor
from .branch import BranchExecutor
from .delay import DelayExecutor
from .loop import LoopExecutor
from .parallel import ParallelExecutor
from .request import RequestExecutor
from .sequence import SequenceExecutor
from .transform import TransformExecutor

__all__ = [
    "BranchExecutor",
    "DelayExecutor",
    "LoopExecutor",
    "ParallelExecutor",
    "RequestExecutor",
    "SequenceExecutor",
    "TransformExecutor",
    "default_executors",
]


def default_executors() -> dict[str, StepExecutor]:
    """A fresh registry of the built-in executors, keyed by step type."""
    return {
        "request": RequestExecutor(),
        "transform": TransformExecutor(),
        "branch": BranchExecutor(),
        "loop": LoopExecutor(),
        "sequence": SequenceExecutor(),
        "parallel": ParallelExecutor(),
        "delay": DelayExecutor(),
    }
