"""Calling user callables: async ones awaited, sync ones in stepwatch's worker threads.

Whether a callable is async is decided once per callable, not per call. A sync call runs
in a thread of the executor's own pool, so that the deadline holds even for blocking code:

* **Bounded.** At most ``max_threads`` calls run at once (``FlowExecutor(max_threads=...)``,
  40 by default). Further calls wait for a thread, under their deadline (*queued*).
* **Queued is not abandoned.** A call cancelled while queued never runs and is not
  counted. A call cancelled while its thread runs is *abandoned*: the step ends at its
  deadline, the thread runs on and keeps its place in the budget until the function
  returns (it is counted in ``abandoned`` meanwhile, and reported again when it finishes,
  late), so stuck calls can never grow the number of threads.
* **Exhaustion is an error, not starvation.** When every thread of the budget is held by
  an abandoned call, a new sync call fails at once with
  :class:`~stepwatch.WorkersExhaustedError` instead of waiting for threads that may
  never come back.
* **Never delays exit.** The threads are daemon threads: an abandoned call does not keep
  the interpreter alive (it is killed with the process, as any daemon thread is).

A sync callable that returns an awaitable (``lambda p: fetch(p)``) has it awaited on the
event loop, like an async callable.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
from anyio.lowlevel import current_token

from ._errors import ValidationError, WorkersExhaustedError
from ._text import listing

if TYPE_CHECKING:
    from ._context import StepContext

__all__ = [
    "DEFAULT_MAX_THREADS",
    "Invoker",
    "WorkerEvent",
    "WorkerListener",
    "WorkerTracker",
    "awaited",
    "invoker_for",
]

DEFAULT_MAX_THREADS: Final = 40
"""Worker threads per :class:`~stepwatch.FlowExecutor` unless ``max_threads`` says."""

_IDLE_SECONDS: Final = 10.0  # an idle thread exits after this long


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


async def awaited(value: Any) -> Any:
    """``value``, or what it resolves to if it is awaitable (closed if never awaited)."""
    if not inspect.isawaitable(value):
        return value
    try:
        return await value
    except BaseException:
        if inspect.iscoroutine(value):
            value.close()  # cancelled before it started: no "never awaited" warning
        raise


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


# states of a call
_QUEUED, _RUNNING, _ABANDONED, _CANCELLED, _DONE = range(5)


class _Call:
    __slots__ = (
        "abandoned_at",
        "arg",
        "context",
        "error",
        "event",
        "fn",
        "notify",
        "result",
        "state",
        "step",
    )

    def __init__(
        self, fn: Callable[[Any], Any], arg: Any, notify: Any, step: tuple[str, str, str]
    ) -> None:
        self.fn = fn
        self.arg = arg
        self.context = contextvars.copy_context()
        self.notify = notify
        self.event = anyio.Event()
        self.step = step  # (flow, step, step type)
        self.state = _QUEUED
        self.result: Any = None
        self.error: BaseException | None = None
        self.abandoned_at = 0.0


class _Waiter:
    __slots__ = ("event", "granted", "notify")

    def __init__(self, notify: Any) -> None:
        self.notify = notify
        self.event = anyio.Event()
        self.granted = False


def _notifier() -> Callable[[Callable[[], object]], object]:
    """How a worker thread wakes the current event loop (asyncio or trio)."""
    native = current_token().native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        return native.call_soon_threadsafe
    run_sync_soon: Callable[[Callable[[], object]], object] = native.run_sync_soon  # type: ignore[attr-defined]
    return run_sync_soon


def _wake(notify: Any, event: anyio.Event) -> None:
    """From a worker thread: set ``event`` on its event loop (gone: nothing to wake)."""
    with contextlib.suppress(Exception):  # the loop closed; nobody is waiting any more
        notify(event.set)


class _Thread(threading.Thread):
    """A daemon worker thread taking calls from its own queue until idle too long."""

    def __init__(self, tracker: WorkerTracker) -> None:
        super().__init__(name="stepwatch worker", daemon=True)
        self.tracker = tracker
        self.queue: queue.SimpleQueue[_Call] = queue.SimpleQueue()

    def run(self) -> None:
        tracker = self.tracker
        while True:
            try:
                call = self.queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with tracker._lock:
                    if self in tracker._idle:  # nobody is handing us a call: exit
                        tracker._idle.remove(self)
                        tracker.threads -= 1
                        return
                call = self.queue.get()  # a call is being handed over right now
            tracker._run(call, self)
            del call  # hold no handler, argument or result while idle


class WorkerTracker:
    """The executor's worker threads for sync callables, and their accounting.

    Attributes:
        max_threads: at most this many sync calls run at once (the thread budget).
        running: calls running in a thread now (abandoned ones included).
        threads: worker threads alive now (running or idle).
        abandoned: calls abandoned at their deadline whose thread is still running.
        abandoned_total: calls abandoned since creation.
        finished_late_total: abandoned calls that have since finished.
        exhausted_total: sync calls refused because every thread was held by an
            abandoned call (:class:`~stepwatch.WorkersExhaustedError`).
        listeners: :class:`WorkerListener` s told about abandoned and late calls.
    """

    def __init__(self, max_threads: int = DEFAULT_MAX_THREADS) -> None:
        if isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1:
            raise ValidationError(
                f"FlowExecutor.max_threads must be an int >= 1; got {max_threads!r}",
                field="FlowExecutor.max_threads",
                value=max_threads,
            )
        self.max_threads = max_threads
        self._lock = threading.Lock()
        self.running = 0
        self.threads = 0
        self.abandoned = 0
        self.abandoned_total = 0
        self.finished_late_total = 0
        self.exhausted_total = 0
        self.listeners: list[WorkerListener] = []
        self._idle: list[_Thread] = []
        self._waiters: deque[_Waiter] = deque()
        self._abandoned_steps: dict[int, str] = {}

    def _notify(self, method: str, event: WorkerEvent) -> None:
        for listener in list(self.listeners):
            with contextlib.suppress(Exception):
                getattr(listener, method)(event)

    async def call(self, invoker: Invoker, arg: Any, ctx: StepContext) -> Any:
        """Run ``invoker.fn(arg)`` as decided; see the module docstring."""
        if invoker.is_async:
            return await invoker.fn(arg)
        step = ctx.step
        where = (
            ctx.flow_name,
            step.name if step is not None else "",
            step.type if step is not None else "",
        )
        notify = _notifier()
        await self._acquire(notify, where)
        call = _Call(invoker.fn, arg, notify, where)
        self._dispatch(call)
        try:
            await call.event.wait()
        except BaseException:
            self._abandon(call)
            raise
        if call.error is not None:
            raise call.error
        return await awaited(call.result)

    # -- the budget ------------------------------------------------------------------------
    async def _acquire(self, notify: Any, where: tuple[str, str, str]) -> None:
        """Take a place in the budget, waiting (queued) while live calls hold them all."""
        while True:
            with self._lock:
                if self.running < self.max_threads:
                    self.running += 1
                    return
                if self.abandoned >= self.max_threads:
                    self.exhausted_total += 1
                    error = self._exhausted(where)
                    waiter = None
                else:
                    waiter = _Waiter(notify)
                    self._waiters.append(waiter)
            if waiter is None:
                raise error
            try:
                await waiter.event.wait()
            except BaseException:
                with self._lock:
                    if waiter.granted:  # handed a place just as we were cancelled
                        self._release_locked()
                    else:
                        with contextlib.suppress(ValueError):
                            self._waiters.remove(waiter)
                raise
            if waiter.granted:
                return

    def _exhausted(self, where: tuple[str, str, str]) -> WorkersExhaustedError:
        names = sorted(set(self._abandoned_steps.values()))
        shown = listing(names)
        return WorkersExhaustedError(
            f"{where[2]} step {where[1]!r} cannot start its sync handler: all "
            f"{self.max_threads} worker threads are held by calls abandoned at their "
            f"deadline and still running ({shown}); raise FlowExecutor(max_threads=...) "
            "or make those handlers return (or run CPU-bound work in_worker_process)",
            step_name=where[1] or None,
            step_type=where[2] or None,
            max_threads=self.max_threads,
            abandoned=names,
        )

    def _release_locked(self) -> None:
        """Give a place back: to the first waiter, else to the pool (lock held)."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True  # the place passes to the waiter: running is unchanged
            _wake(waiter.notify, waiter.event)
        else:
            self.running -= 1

    def _wake_all_locked(self) -> None:
        """Every thread is abandoned: let the waiters fail instead of waiting (lock held)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            _wake(waiter.notify, waiter.event)

    # -- the threads ---------------------------------------------------------------------
    def _dispatch(self, call: _Call) -> None:
        with self._lock:
            thread = self._idle.pop() if self._idle else None
            if thread is None:
                thread = _Thread(self)
                self.threads += 1
                start = True
            else:
                start = False
        thread.queue.put(call)
        if start:
            try:
                thread.start()
            except BaseException:  # no thread (a pids or memory limit): the call never
                with self._lock:  # runs; its place and the thread count are given back
                    self.threads -= 1
                    call.state = _CANCELLED
                    self._release_locked()
                raise

    def _run(self, call: _Call, thread: _Thread) -> None:
        """In ``thread``: run one call, report back, and become idle (in the same critical
        section as the place is given back, so a thread is never started while one is
        about to be idle)."""
        with self._lock:
            if call.state == _CANCELLED:  # cancelled while queued: never runs
                self._idle.append(thread)
                return
            call.state = _RUNNING
        try:
            call.result = call.context.run(call.fn, call.arg)
        except BaseException as exc:  # delivered to the caller, as anyio does
            call.error = exc
        with self._lock:
            late = call.state == _ABANDONED
            call.state = _DONE
            if late:
                self.abandoned -= 1
                self.finished_late_total += 1
                self._abandoned_steps.pop(id(call), None)
            self._idle.append(thread)
            self._release_locked()
        if late:
            flow, step, step_type = call.step
            self._notify(
                "worker_finished_late",
                WorkerEvent(
                    flow, step, step_type, call.abandoned_at, time.monotonic() - call.abandoned_at
                ),
            )
            if inspect.iscoroutine(call.result):
                call.result.close()
        else:
            _wake(call.notify, call.event)

    def _abandon(self, call: _Call) -> None:
        """The caller was cancelled while waiting for ``call`` (on the event loop)."""
        event = None
        with self._lock:
            if call.state == _QUEUED:  # not started: it never will, and is not counted
                call.state = _CANCELLED
                self._release_locked()
            elif call.state == _RUNNING:
                call.state = _ABANDONED
                call.abandoned_at = time.monotonic()
                self.abandoned += 1
                self.abandoned_total += 1
                self._abandoned_steps[id(call)] = call.step[1]
                flow, step, step_type = call.step
                event = WorkerEvent(flow, step, step_type, call.abandoned_at)
                if self.abandoned >= self.max_threads:
                    self._wake_all_locked()
        if event is not None:
            self._notify("worker_abandoned", event)
        elif call.state == _DONE and inspect.iscoroutine(call.result):
            call.result.close()  # finished just as we gave up: never awaited
