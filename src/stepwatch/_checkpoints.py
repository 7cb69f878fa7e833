"""Step boundaries are checkpoints.

Deadlines are carried by anyio cancel scopes, and a cancel scope only acts at a checkpoint
(an ``await`` that reaches the event loop). A handler that never awaits (a cache hit, an
inline transform, CPU work, a blocking call in an ``async def``) reaches none, so without
help a flow of such steps would run straight through every deadline and starve every
other task. So every step boundary (the start of a step, and the moment its value arrives)
does what an ``await`` would do, at a cost of one clock read when nothing is wrong:

* it is a cancel point: a caller's cancellation is raised there, so no step starts for a
  caller that has already given up (:func:`enter`);
* a deadline that has passed is acted on at once (:func:`deliver_expired`): the cancel
  scopes that own expired deadlines are cancelled and the cancellation is raised, so the
  step that owns the deadline reports it, the same way on asyncio and trio, whether or not
  the backend's timer has fired yet;
* it is a schedule point at least every :data:`YIELD_INTERVAL` seconds of a run (and at
  the first boundary of every run), so other tasks and the backend's timers get to run.

On asyncio a cancel can also come as a native request (``Task.cancel()``: shutdown,
``asyncio.timeout``) that no anyio cancel scope knows of. asyncio raises it once, at the
task's next ``await``; a handler that swallows it would leave nothing for anyio's check to
find. So the boundary also compares the pending cancel requests of the task ``run()`` was
called in with their number when the run began, as ``asyncio.timeout`` does, and raises
the cancellation again (:func:`raise_swallowed_cancel`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from anyio import current_effective_deadline, get_cancelled_exc_class
from anyio.lowlevel import checkpoint

if TYPE_CHECKING:
    from ._context import RunState, StepContext

__all__ = [
    "YIELD_INTERVAL",
    "cancelled_for_real",
    "deliver_expired",
    "enter",
    "host_task",
    "raise_swallowed_cancel",
]

YIELD_INTERVAL: Final = 0.002
"""Seconds of a run's steps between two schedule points made by the step boundaries."""

_GIVE_UP_AFTER: Final = 100  # checkpoints waiting for a foreign expired deadline to act


async def enter(parent: StepContext, now: float) -> float:
    """The boundary before a child of ``parent`` starts, when it is due a schedule point
    or its deadline has passed (the executor does the plain cancel check itself, without
    this extra coroutine); returns the time the child starts.

    Raises the backend's cancellation if the caller was cancelled or a deadline governing
    the child has already passed (then the child never starts).
    """
    run = parent._run
    clock = run.clock
    if now - run.yielded_at >= YIELD_INTERVAL:
        run.yielded_at = now
        await checkpoint()
        now = clock()
    else:
        await run.cancel_check()
    if now >= parent._deadline:
        await deliver_expired(parent, now)
        now = clock()
    return now


async def deliver_expired(ctx: StepContext, now: float) -> None:
    """Act on the deadline governing ``ctx``, which has passed at ``now``.

    Cancels every cancel scope from ``ctx`` outwards whose deadline has passed (the
    outermost of them catches the cancellation and owns the timeout, on both backends),
    then checkpoints, which raises the cancellation. A deadline that is not stepwatch's
    (the caller's own scope) is left to the backend: checkpoints until it acts. Returns
    only if no deadline turned out to be expired (e.g. the caller moved theirs).
    """
    owner: StepContext | None = ctx
    while owner is not None:
        scope = owner._scope
        if scope is not None and owner._own_deadline <= now:
            scope.cancel()
        owner = owner._parent
    await checkpoint()
    clock = ctx._run.clock
    for _ in range(_GIVE_UP_AFTER):
        if current_effective_deadline() > clock():
            return
        await checkpoint()


def cancelled_for_real(exc: BaseException) -> bool:
    """Whether ``exc`` is a cancellation of the running task, not one a handler raised.

    On asyncio a real cancellation comes with a pending cancel request on the task
    (``Task.cancelling()``); a ``CancelledError`` raised by a handler that nobody
    cancelled has none, and on trio ``asyncio.CancelledError`` is never a cancellation.
    """
    if isinstance(exc, asyncio.CancelledError):
        try:
            task = asyncio.current_task()
        except RuntimeError:  # not in an asyncio event loop (trio)
            return False
        return task is not None and task.cancelling() > 0
    return isinstance(exc, get_cancelled_exc_class())


def host_task() -> tuple[asyncio.Task[Any] | None, int]:
    """The asyncio task running now and its pending cancel requests (``None, 0`` on trio)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio event loop in this thread (trio)
        return None, 0
    if task is None:
        return None, 0
    return task, task.cancelling()


def raise_swallowed_cancel(run: RunState) -> None:
    """Raise the caller's cancellation again if the task ``run`` was called in has a
    cancel request that arrived during the run and that a handler swallowed (the task is
    still being cancelled); a no-op on trio."""
    host = run.host
    if host is not None and host.cancelling() > run.host_cancels:
        raise asyncio.CancelledError(
            "the caller's cancellation, raised again at a step boundary: a handler swallowed it"
        )
