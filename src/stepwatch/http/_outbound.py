"""Outbound deadlines for httpx: budget headers, capped timeouts, nothing sent too late.

Needs httpx (``pip install 'stepwatch[http]'``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, cast

import httpx
from anyio import CancelScope, current_effective_deadline, current_time, sleep_until
from anyio.lowlevel import checkpoint, checkpoint_if_cancelled

from .._errors import ValidationError
from .._text import encodable
from ._budget import format_grpc_timeout, format_ms, parse_grpc_timeout, parse_ms
from ._config import OutboundBudget, config_or_default
from ._propagation import inject_context
from ._telemetry import count, http_metrics, observe, set_attributes

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._telemetry import HttpMetrics

__all__ = [
    "MAX_TARGET_LENGTH",
    "BudgetExhaustedError",
    "DeadlineTransport",
    "check_target",
    "deadline_wins",
    "own_deadline_answered",
    "prepare",
]

_COUNTED: Final = "stepwatch.deadline.counted"  # request extension: metrics already taken
MAX_TARGET_LENGTH: Final = 100
"""Characters of a ``target`` label value."""


class BudgetExhaustedError(httpx.TimeoutException):
    """The request was **not sent**: the enclosing deadline left no more than the margin.

    An ``httpx.TimeoutException`` (so code handling httpx timeouts handles it), and
    retryable for stepwatch's retry predicate (a retry is only attempted if its backoff
    ends before the enclosing deadline).

    Attributes:
        time_left: seconds left before the enclosing deadline when the request was made.
        margin: the :attr:`OutboundBudget.margin` in force.
    """

    retryable = True

    def __init__(self, message: str, *, request: httpx.Request, time_left: float, margin: float):
        super().__init__(message, request=request)
        self.time_left = time_left
        self.margin = margin


def _set_budget(headers: httpx.Headers, name: str | None, value: str, parse: Any) -> None:
    """Set a budget header, keeping a smaller valid value already there."""
    if name is None:
        return
    present = headers.get(name)
    if present is not None:
        old, new = parse(present), parse(value)
        if old is not None and new is not None and old <= new:
            return
    headers[name] = value


async def cancelled_caller() -> None:
    """Raise the caller's cancellation if it is already cancelled (its scope's ``cancel()``
    was called or its deadline fired: anyio's effective deadline is then ``-inf``), as at
    any checkpoint: nothing is sent, and nothing counts it as a request not sent."""
    if current_effective_deadline() == -math.inf:
        await checkpoint_if_cancelled()


def prepare(
    request: httpx.Request,
    budget: OutboundBudget,
    metrics: HttpMetrics | None,
    target: str,
) -> float:
    """Apply the enclosing deadline to ``request``; return that deadline (``inf``: none).

    Raises:
        BudgetExhaustedError: no more than the margin is left (``-inf``, a cancelled
            caller, counts as none left; :func:`cancelled_caller` raises that caller's
            cancellation first); nothing was sent.
    """
    if budget.propagate_trace:
        inject_context(request.headers)
    deadline = current_effective_deadline()
    if deadline == math.inf:
        return deadline
    left = deadline - current_time()  # -inf: the caller is already cancelled, no time left
    margin = cast("float", budget.margin)
    send_budget = left - margin
    label = None  # the target's label value, on the first send of a request only
    if metrics is not None and not request.extensions.get(_COUNTED):
        request.extensions[_COUNTED] = True
        label = metrics.target(target)
        count(metrics.outbound_requests, label)
    if send_budget <= 0:
        set_attributes({"stepwatch.deadline.time_left": left, "stepwatch.deadline.not_sent": True})
        if metrics is not None:
            count(metrics.outbound_not_sent, metrics.target(target))
        raise BudgetExhaustedError(
            f"{request.method} {request.url} not sent: {max(left, 0.0) * 1000:.1f} ms left "
            f"before the deadline, no more than the {margin * 1000:.1f} ms margin",
            request=request,
            time_left=left,
            margin=margin,
        )
    _set_budget(
        request.headers, budget.grpc_header, format_grpc_timeout(send_budget), parse_grpc_timeout
    )
    _set_budget(request.headers, budget.ms_header, format_ms(send_budget), parse_ms)
    if budget.cap_timeouts:
        timeouts = request.extensions.get("timeout") or dict.fromkeys(
            ("connect", "read", "write", "pool")
        )
        request.extensions["timeout"] = {
            key: left if value is None else min(value, left) for key, value in timeouts.items()
        }
    set_attributes(
        {"stepwatch.deadline.time_left": left, "stepwatch.deadline.budget_sent": send_budget}
    )
    if metrics is not None and label is not None:
        observe(metrics.outbound_budget, left, label)
    return deadline


async def deadline_wins(deadline: float) -> None:
    """httpx timed out at or after the enclosing deadline: let anyio's cancellation
    through, so the step that owns the deadline reports a timeout (not an httpx error)."""
    if current_time() < deadline:
        return
    for _ in range(64):  # the backend delivers the cancellation within a few iterations
        await checkpoint()


async def own_deadline_answered(deadline: float, margin: float) -> None:
    """The server answered "deadline exceeded" when no more than the margin is left: that
    is our own deadline, seen first downstream (it got the time left minus the margin).
    Wait for it (at most the margin), so the step that owns it reports a timeout rather
    than a failed call. With more time left, the server's own cap expired: return."""
    if math.isinf(deadline) or deadline - current_time() > margin:
        return
    await sleep_until(deadline)
    await deadline_wins(deadline)


def check_target(owner: str, target: object) -> str:
    """Validate a ``target`` label value (exported as UTF-8: see :func:`encodable`)."""
    if (
        not isinstance(target, str)
        or not 0 < len(target) <= MAX_TARGET_LENGTH
        or not encodable(target)
    ):
        raise ValidationError(
            f"{owner}.target must be a non-empty string of at most {MAX_TARGET_LENGTH} "
            f"characters that encodes as UTF-8 (it is a metric label); got {target!r}",
            field=f"{owner}.target",
            value=target,
        )
    return target


class DeadlineTransport(httpx.AsyncBaseTransport):
    """httpx transport wrapper carrying the enclosing anyio deadline to the server.

    For each request made inside an anyio deadline (so inside any stepwatch step):

    * sets the budget headers (``grpc-timeout``, ``x-request-timeout-ms``) to the time
      left minus :attr:`OutboundBudget.margin`, keeping a smaller value already set;
    * caps httpx's connect/read/write/pool timeouts by the time left;
    * when no more than the margin is left, raises :class:`BudgetExhaustedError` without
      sending anything; a caller that is already cancelled gets its cancellation (as at
      any checkpoint), and nothing is sent either;
    * when the server answers ``504`` with no more than the margin left (it gave up on
      the budget it was sent), waits for the deadline, so the step that owns it reports
      a timeout; an httpx timeout at the deadline likewise becomes the deadline's
      cancellation.

    It also injects the OpenTelemetry trace context through the global propagators
    (unless the request already carries one; a ``baggage`` or ``tracestate`` header the
    caller set is kept as given), also outside any deadline. Without an enclosing
    deadline requests pass unchanged otherwise.

    Args:
        transport: the transport to wrap; a new ``httpx.AsyncHTTPTransport()`` if
            ``None``. Wrap the OpenTelemetry httpx instrumentation's transport here to get
            client spans too.
        budget: the :class:`OutboundBudget` (margin, header names, switches).
        target: the ``target`` label of this transport's metrics (e.g. ``"pricing"``).
        metrics: ``False`` records no metrics.
        registry: prometheus-client registry; the default one if ``None``.

    Example::

        client = httpx.AsyncClient(transport=DeadlineTransport(target="pricing"))
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        budget: OutboundBudget | None = None,
        target: str = "default",
        metrics: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.budget = config_or_default("DeadlineTransport.budget", budget, OutboundBudget)
        self.target = check_target("DeadlineTransport", target)
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._metrics = http_metrics(registry) if metrics else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Apply the deadline to ``request`` and send it through the wrapped transport."""
        await cancelled_caller()
        deadline = prepare(request, self.budget, self._metrics, self.target)
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TimeoutException:
            await deadline_wins(deadline)
            raise
        if response.status_code == 504:
            try:
                await own_deadline_answered(deadline, cast("float", self.budget.margin))
            except BaseException:
                with CancelScope(shield=True):
                    await response.aclose()
                raise
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._transport.aclose()
