"""Calling user callables: async ones awaited, sync ones in tracked worker threads.

Whether a callable is async is decided once per callable, not per call. A sync call runs
with ``abandon_on_cancel=True`` so a deadline holds even for blocking code; the abandoned
thread is counted while it keeps running and reported again when it finishes, late.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from ._context import StepContext

__all__ = ["Invoker", "WorkerEvent", "WorkerListener", "WorkerTracker", "invoker_for"]


class Invoker:
    """A callable with its sync/async nature decided once."""

    __slots__ = ("fn", "is_async")

    def __init__(self, fn: Callable[[Any], Any], is_async: bool | None = None) -> None:
        self.fn = fn
        self.is_async = _is_async(fn) if is_async is None else is_async


def _is_async(fn: object) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - async __call__ of an object
    return call is not None and inspect.iscoroutinefunction(call)


# fn -> is_async. The value must not reference fn: a WeakKeyDictionary entry whose value
# holds its key strongly is never released (that kept every handler, closure and bound
# method's object alive for the life of the process).
_cache: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def invoker_for(fn: Callable[[Any], Any]) -> Invoker:
    """Return an :class:`Invoker` for ``fn``, its sync/async nature cached per callable."""
    try:
        return Invoker(fn, _cache[fn])
    except (KeyError, TypeError):
        invoker = Invoker(fn)
        with contextlib.suppress(TypeError):  # not weak-referenceable: decided per use
            _cache[fn] = invoker.is_async
        return invoker


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """A worker thread was abandoned at a deadline, or finished after being abandoned.

    Attributes:
        flow: flow name.
        step: step name.
        step_type: step type.
        abandoned_at: ``time.monotonic()`` when it was abandoned.
        late_by: for a late finish, seconds it kept running after being abandoned.
    """

    flow: str
    step: str
    step_type: str
    abandoned_at: float
    late_by: float | None = None


class WorkerListener(Protocol):
    """Hook told about abandoned worker threads (the metrics integration is one)."""

    def worker_abandoned(self, event: WorkerEvent) -> None: ...

    def worker_finished_late(self, event: WorkerEvent) -> None: ...


class _Call:
    __slots__ = ("abandoned_at", "done", "event")

    def __init__(self) -> None:
        self.done = False
        self.abandoned_at: float | None = None
        self.event: WorkerEvent | None = None


class WorkerTracker:
    """Counts worker threads that were abandoned and are still running.

    Attributes:
        abandoned: threads abandoned and still running now.
        abandoned_total: threads abandoned since creation.
        finished_late_total: abandoned threads that have since finished.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.abandoned = 0
        self.abandoned_total = 0
        self.finished_late_total = 0
        self.listeners: list[WorkerListener] = []

    def _notify(self, method: str, event: WorkerEvent) -> None:
        for listener in list(self.listeners):
            with contextlib.suppress(Exception):
                getattr(listener, method)(event)

    async def call(
        self, invoker: Invoker, arg: Any, ctx: StepContext, *, inline: bool = False
    ) -> Any:
        """Run ``invoker.fn(arg)`` as decided; see the module docstring."""
        if invoker.is_async:
            return await invoker.fn(arg)
        if inline:
            return invoker.fn(arg)
        fn = invoker.fn
        record = _Call()

        def target() -> Any:
            try:
                return fn(arg)
            finally:
                with self._lock:
                    record.done = True
                    late = record.event
                    if late is not None:
                        self.abandoned -= 1
                        self.finished_late_total += 1
                if late is not None:
                    assert record.abandoned_at is not None
                    self._notify(
                        "worker_finished_late",
                        WorkerEvent(
                            late.flow,
                            late.step,
                            late.step_type,
                            late.abandoned_at,
                            time.monotonic() - record.abandoned_at,
                        ),
                    )

        try:
            return await anyio.to_thread.run_sync(target, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            step = ctx.step
            event = None
            with self._lock:
                if not record.done:
                    record.abandoned_at = time.monotonic()
                    event = WorkerEvent(
                        ctx.flow_name,
                        step.name if step is not None else "",
                        step.type if step is not None else "",
                        record.abandoned_at,
                    )
                    record.event = event
                    self.abandoned += 1
                    self.abandoned_total += 1
            if event is not None:
                self._notify("worker_abandoned", event)
            raise
