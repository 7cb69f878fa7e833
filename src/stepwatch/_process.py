"""Process isolation for CPU-bound handlers that must really stop at their deadline.

A sync handler in a worker thread is abandoned at its deadline but keeps burning CPU until
it returns. Wrapped with :func:`in_worker_process`, it runs in an anyio worker process that
is killed when the deadline expires (``anyio.to_process.run_sync(..., cancellable=True)``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio.to_process

from ._errors import ValidationError

__all__ = ["in_worker_process"]

T = TypeVar("T")


def in_worker_process(fn: Callable[[Any], T]) -> Callable[[Any], Awaitable[T]]:
    """Make a sync handler run in a worker process that is killed at the deadline.

    ``fn`` and its params and result must be picklable (a module-level function). Starting
    a worker process costs tens of milliseconds the first time; anyio keeps idle workers for
    reuse. A killed worker is replaced on the next call.

    Example::

        executor = FlowExecutor(handlers={"score": in_worker_process(score_model)})

    Raises:
        ValidationError: ``fn`` is not callable or is a coroutine function.
    """
    if not callable(fn):
        raise ValidationError(
            f"in_worker_process() needs a callable; got {fn!r}",
            field="in_worker_process.fn",
            value=fn,
        )
    import inspect

    if inspect.iscoroutinefunction(fn):
        raise ValidationError(
            f"in_worker_process() needs a sync function, {fn!r} is async",
            field="in_worker_process.fn",
            value=fn,
        )

    async def run_in_process(params: Any) -> T:
        return await anyio.to_process.run_sync(fn, params, cancellable=True)

    run_in_process.__name__ = getattr(fn, "__name__", "run_in_process")
    run_in_process.__qualname__ = getattr(fn, "__qualname__", "run_in_process")
    return run_in_process
