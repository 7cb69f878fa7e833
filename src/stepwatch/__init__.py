"""stepwatch: run flows of steps under layered deadlines, with telemetry built in."""

from ._context import ChildProgress, Progress, StepContext
from ._errors import (
    DeadlineExceededError,
    ErrorCode,
    FlowTimeoutError,
    StepFailedError,
    StepTimeoutError,
    StepwatchError,
    ValidationError,
    WorkersExhaustedError,
)
from ._executor import FlowExecutor
from ._executor import set_defaults as _set_defaults
from ._outcome import CancelCause, Outcome, Status
from ._process import in_worker_process
from ._protocols import ExecutorDecorator, StepExecutor, StepHook
from ._public import publish as _publish
from ._record import StepEnded
from ._result import RunResult
from ._retry import RETRYABLE_STATUSES, Retry, is_retryable, retry_after
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
from .executors import default_executors as _default_executors
from .telemetry._instrument import make_telemetry as _make_telemetry

__all__ = [
    "MAX_DEPTH",
    "NO_FALLBACK",
    "RETRYABLE_STATUSES",
    "Branch",
    "CancelCause",
    "ChildProgress",
    "DeadlineExceededError",
    "Delay",
    "ErrorCode",
    "ExecutorDecorator",
    "Flow",
    "FlowExecutor",
    "FlowTimeoutError",
    "Loop",
    "Outcome",
    "Parallel",
    "Progress",
    "Request",
    "Retry",
    "RunResult",
    "Sequence",
    "Status",
    "Step",
    "StepContext",
    "StepEnded",
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
    "is_retryable",
    "retry_after",
]

# The core knows neither the built-in step types nor the telemetry: plug them in here.
_set_defaults(executors=_default_executors, instrumentation=_make_telemetry)

# Public names show as stepwatch.X (in tracebacks, reprs and error.type), not as the
# private module that defines them.
_publish(globals(), __all__, __name__)


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("stepwatch")
    raise AttributeError(f"module 'stepwatch' has no attribute {name!r}")
