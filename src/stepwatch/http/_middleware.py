"""DeadlineMiddleware: a pure-ASGI middleware running each request under its budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import ValidationError
from ._asgi import ASGIApp, Receive, Scope, Send, send_response, serve
from ._config import InboundBudget, config_or_default
from ._telemetry import http_metrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["DeadlineMiddleware", "plain_reject"]


async def plain_reject(send: Send, status: int, reason: str) -> None:
    """The default answer: ``504`` (budget spent) or ``400`` (invalid budget), plain text."""
    body = {
        "spent": b"deadline exceeded: the request's time budget was spent\n",
        "expired": b"deadline exceeded: the request's time budget ran out\n",
        "invalid": b"invalid request time budget header\n",
    }.get(reason, b"deadline exceeded\n")
    await send_response(send, status, body, b"text/plain; charset=utf-8")


class DeadlineMiddleware:
    """Pure-ASGI middleware running every HTTP request under the caller's time budget.

    The budget (a relative duration from the ``grpc-timeout`` and ``x-request-timeout-ms``
    headers, or :attr:`InboundBudget.default`, capped by :attr:`InboundBudget.max_budget`)
    becomes an anyio deadline around the application, so
    ``anyio.current_effective_deadline()`` sees it and every stepwatch run inside is
    clamped by it (steps it cuts off end ``cancelled`` with cause ``outside``).

    * Spent on arrival (``0``, or gone by the time it was read): ``504`` at once, the
      application is never called.
    * Expired before the response started: ``504``. Expired mid-response: the response
      is left incomplete, so the server closes the connection (the client sees an error,
      never a truncated success). Once the response is complete, the deadline is lifted.
    * Invalid budget headers: ignored (``InboundBudget(on_invalid="reject")``: ``400``).
    * Non-HTTP scopes (lifespan, websocket) pass through untouched.
    * Without a current span, the caller's trace context is extracted and attached, so
      stepwatch's spans continue the caller's trace.

    Args:
        app: the ASGI application.
        budget: how to read the budget (:class:`InboundBudget`); defaults to the default
            headers, no default budget and no cap.
        metrics: ``False`` records no metrics.
        registry: prometheus-client registry; the default one if ``None``.

    Raises:
        ValidationError: ``app`` is not callable, ``budget`` is not an
            :class:`InboundBudget`.
    """

    def __init__(
        self,
        app: ASGIApp,
        budget: InboundBudget | None = None,
        *,
        metrics: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not callable(app):
            raise ValidationError(
                f"DeadlineMiddleware.app must be an ASGI application; got {app!r}",
                field="DeadlineMiddleware.app",
                value=app,
            )
        self.app = app
        self.budget = config_or_default("DeadlineMiddleware.budget", budget, InboundBudget)
        self._metrics = http_metrics(registry) if metrics else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        await serve(
            self.app,
            scope,
            receive,
            send,
            config=self.budget,
            metrics=self._metrics,
            reject=plain_reject,
        )
