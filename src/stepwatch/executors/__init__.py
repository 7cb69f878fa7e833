"""Built-in step executors, one module per step type, and THE list of built-in step types.

Each executor follows the :class:`stepwatch.StepExecutor` protocol, uses only the public
:class:`stepwatch.StepContext` API, and contains no telemetry and no deadline code: the
:class:`FlowExecutor` wraps every registered executor in the deadline guard and observes
every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .._protocols import StepExecutor
from .._steps import Branch, Delay, Loop, Parallel, Request, Sequence, Step, Transform, _FlowStep
from .branch import BranchExecutor
from .delay import DelayExecutor
from .loop import LoopExecutor
from .parallel import ParallelExecutor
from .request import RequestExecutor
from .sequence import FlowRootExecutor, SequenceExecutor
from .transform import TransformExecutor

__all__ = [
    "BUILTIN_STEPS",
    "BranchExecutor",
    "DelayExecutor",
    "FlowRootExecutor",
    "LoopExecutor",
    "ParallelExecutor",
    "RequestExecutor",
    "SequenceExecutor",
    "TransformExecutor",
    "default_executors",
]

BUILTIN_STEPS: Final[tuple[tuple[type[Step], Callable[[], StepExecutor]], ...]] = (
    (Request, RequestExecutor),
    (Transform, TransformExecutor),
    (Branch, BranchExecutor),
    (Loop, LoopExecutor),
    (Sequence, SequenceExecutor),
    (Parallel, ParallelExecutor),
    (Delay, DelayExecutor),
    (_FlowStep, FlowRootExecutor),
)
"""Every built-in step type: its definition (``type`` name, ``default_timeout``) and its
executor. The one place the built-in types are listed; everything else derives from it."""


def default_executors() -> dict[str, StepExecutor]:
    """A fresh registry of the built-in executors, keyed by step type."""
    return {step.type: make() for step, make in BUILTIN_STEPS}
