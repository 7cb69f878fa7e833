"""stepwatch: run flows of steps under layered deadlines, with telemetry built in."""

from ._context import StepContext
from ._errors import (
    ErrorCode,
    FlowTimeoutError,
    StepFailedError,
    StepTimeoutError,
    StepwatchError,
    ValidationError,
    WorkersExhaustedError,
)
from ._executor import FlowExecutor
from ._outcome import CancelCause, Outcome, Status
from ._process import in_worker_process
from ._protocols import ExecutorDecorator, StepExecutor, StepHook
from ._result import RunResult
from ._retry import Retry
from ._steps import (
    MAX_DEPTH,
    NO_FALLBACK,
    Branch,
    Delay,
    Flow,
    Loop,
    Parallel,
    Request,
    Sequence,
    Step,
    Transform,
)
from ._timeouts import TimeoutOptions
from ._workers import WorkerEvent, WorkerListener, WorkerTracker

__all__ = [
    "MAX_DEPTH",
    "NO_FALLBACK",
    "Branch",
    "CancelCause",
    "Delay",
    "ErrorCode",
    "ExecutorDecorator",
    "Flow",
    "FlowExecutor",
    "FlowTimeoutError",
    "Loop",
    "Outcome",
    "Parallel",
    "Request",
    "Retry",
    "RunResult",
    "Sequence",
    "Status",
    "Step",
    "StepContext",
    "StepExecutor",
    "StepFailedError",
    "StepHook",
    "StepTimeoutError",
    "StepwatchError",
    "TimeoutOptions",
    "Transform",
    "ValidationError",
    "WorkerEvent",
    "WorkerListener",
    "WorkerTracker",
    "WorkersExhaustedError",
    "in_worker_process",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("stepwatch")
    raise AttributeError(f"module 'stepwatch' has no attribute {name!r}")
