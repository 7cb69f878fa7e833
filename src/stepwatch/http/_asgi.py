"""Inbound deadlines on ASGI: run one request under its budget; small ASGI helpers."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias

from anyio import CancelScope, current_time

from .._log import log
from ._budget import resolve
from ._propagation import detach_context, extract_context
from ._telemetry import count, observe, set_attributes

if TYPE_CHECKING:
    from ._config import InboundBudget
    from ._telemetry import HttpMetrics

__all__ = [
    "ASGIApp",
    "ClientGone",
    "Receive",
    "Reject",
    "Scope",
    "Send",
    "lifespan",
    "read_body",
    "send_response",
    "serve",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
Reject: TypeAlias = Callable[[Send, int, str], Awaitable[None]]
"""``reject(send, status, reason)``: answer a request the application did not answer."""


class _Watched:
    """Wraps ``send``: notes the response's progress, lifts the deadline once complete."""

    __slots__ = ("completed", "scope", "send", "started", "trailers")

    def __init__(self, send: Send, scope: CancelScope) -> None:
        self.send = send
        self.scope = scope
        self.started = self.completed = self.trailers = False

    async def __call__(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            self.started = True  # before the await: a cut-off start may have gone out
            # the trailers extension: the response ends with its last trailers message
            self.trailers = bool(message.get("trailers", False))
        await self.send(message)
        # the last body message, or a response sent by the server from a file (the
        # pathsend extension: always complete; zerocopysend: like a body message); with
        # trailers announced, the last trailers message
        if self.trailers:
            done = kind == "http.response.trailers" and not message.get("more_trailers", False)
        else:
            done = kind == "http.response.pathsend" or (
                kind in ("http.response.body", "http.response.zerocopysend")
                and not message.get("more_body", False)
            )
        if done:
            self.completed = True
            # the caller has its answer: what the app does afterwards (background tasks)
            # is no longer on the caller's clock
            self.scope.deadline = math.inf


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a whole response."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def serve(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    config: InboundBudget,
    metrics: HttpMetrics | None,
    reject: Reject,
) -> None:
    """Run one HTTP request under its budget (shared by the middleware and JSON-RPC app)."""
    arrived = current_time()
    headers = scope.get("headers") or ()
    arrival = resolve(config, headers)
    token = extract_context(headers)
    try:
        budget = arrival.budget
        attributes: dict[str, Any] = {"stepwatch.deadline.source": arrival.source}
        if budget is not None:
            attributes["stepwatch.deadline.inbound_budget"] = budget
        if metrics is not None:
            count(metrics.inbound_requests, arrival.source)
            if budget is not None:
                observe(metrics.inbound_budget, budget)
        if arrival.invalid and config.on_invalid == "reject":
            await _rejected(send, reject, attributes, metrics, 400, "invalid")
            return
        if budget is None:
            set_attributes(attributes)
            await app(scope, receive, send)
            return
        deadline = arrived + budget
        if current_time() >= deadline:
            await _rejected(send, reject, attributes, metrics, 504, "spent")
            return
        set_attributes(attributes)
        with CancelScope(deadline=deadline) as cancel_scope:
            watched = _Watched(send, cancel_scope)
            await app(scope, receive, watched)
        if not cancel_scope.cancelled_caught or watched.completed:
            return
        phase = "during_response" if watched.started else "before_response"
        set_attributes({"stepwatch.deadline.expired": phase})
        if metrics is not None:
            count(metrics.inbound_expired, phase)
        if not watched.started:
            await reject(send, 504, "expired")
            return
        # Too late to change the status: return without completing the response, so
        # the server closes the connection and the client sees a broken response
        # instead of a silently truncated one.
        log(
            logging.WARNING,
            "http.deadline_expired_mid_response",
            {"path": str(scope.get("path", ""))[:200], "budget": budget},
        )
    finally:
        detach_context(token)


async def _rejected(
    send: Send,
    reject: Reject,
    attributes: dict[str, Any],
    metrics: HttpMetrics | None,
    status: int,
    reason: str,
) -> None:
    attributes["stepwatch.deadline.rejected"] = reason
    set_attributes(attributes)
    if metrics is not None:
        count(metrics.inbound_rejected, reason)
    await reject(send, status, reason)


class ClientGone(Exception):
    """The client disconnected before sending the whole body."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or ``None`` if it is larger than ``limit`` bytes.

    Raises:
        ClientGone: the client disconnected first.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge the lifespan protocol's startup and shutdown."""
    while True:
        message = await receive()
        if message.get("type") == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message.get("type") == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
