"""JsonRpcClient: JSON-RPC 2.0 calls over HTTP under the enclosing deadline, as handlers.

Needs httpx (``pip install 'stepwatch[http]'``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import httpx

from .._errors import ValidationError
from .._retry import RETRYABLE_STATUSES
from .._text import clip, message_of
from ..telemetry._labels import shorten
from ._config import OutboundBudget, config_or_default
from ._errors import (
    JsonRpcCallError,
    JsonRpcCode,
    JsonRpcError,
    JsonRpcProtocolError,
    JsonRpcTransportError,
)
from ._outbound import (
    MAX_TARGET_LENGTH,
    BudgetExhaustedError,
    cancelled_caller,
    check_target,
    deadline_wins,
    own_deadline_answered,
    prepare,
)
from ._telemetry import http_metrics
from ._wire import NO_ID, check_method, decode, error_object, result_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["JsonRpcClient"]

DEFAULT_RETRYABLE_CODES: Final = frozenset({int(JsonRpcCode.DEADLINE_EXCEEDED)})
DEFAULT_RETRYABLE_STATUSES: Final = RETRYABLE_STATUSES  # the core retry default's statuses


def _ints(field: str, values: object) -> frozenset[int]:
    where = f"JsonRpcClient.{field}"
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(
            f"{where} must be a collection of ints; got {values!r}", field=where, value=values
        )
    found = frozenset(values)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in found):
        raise ValidationError(
            f"{where} must hold ints only; got {values!r}", field=where, value=values
        )
    return found


class JsonRpcClient:
    """Calls one JSON-RPC 2.0 endpoint over HTTP; its methods become stepwatch handlers.

    Every call carries the enclosing anyio deadline (the step's) exactly as
    :class:`DeadlineTransport` does: budget headers with the time left minus the margin,
    httpx timeouts capped, nothing sent when no time is left
    (:class:`BudgetExhaustedError`), and the trace context injected.

    A call returns the ``result``; otherwise it raises :class:`JsonRpcError` (an error
    object), :class:`JsonRpcTransportError` (connection failure, httpx timeout, HTTP
    429/502/503/504 without an error object) or :class:`JsonRpcProtocolError` (an answer
    that is not a valid response to this call). Inside a flow, stepwatch wraps them in a
    :class:`stepwatch.StepFailedError` (same ``retryable``) naming the step.

    Args:
        url: the endpoint, ``http://`` or ``https://``.
        client: the ``httpx.AsyncClient`` to send with (yours to close); ``None`` makes
            one that :meth:`aclose` closes.
        budget: the :class:`OutboundBudget` (margin, header names, switches).
        target: the ``target`` metric label; default ``host:port`` of ``url`` (past 100
            characters: its first 90, ``…~`` and 8 hex digits of a hash of the whole).
        retryable_codes: error codes that are worth a retry (default ``-32001``, the
            deadline error of stepwatch's server).
        retryable_statuses: HTTP statuses that mean "overloaded, try again" (default 429,
            502, 503, 504); any error under them is retryable.
        headers: extra HTTP headers for every call.
        max_response_size: largest answer read, in bytes (decoded).
        metrics: ``False`` records no metrics; ``registry``: the prometheus-client
            registry (the default one if ``None``).

    Example::

        pricing = JsonRpcClient("http://pricing:8000/rpc", http_client)
        executor = FlowExecutor(handlers=pricing.handlers("pricing.quote"))
        flow = Flow("page", [Request("price", "pricing.quote", {"sku": "A-1"}, timeout=0.2)])

    Raises:
        ValidationError: a URL that is not http(s), a bad ``target``, codes or statuses
            that are not ints, a ``max_response_size`` below 1.
    """

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient | None = None,
        *,
        budget: OutboundBudget | None = None,
        target: str | None = None,
        retryable_codes: Iterable[int] = DEFAULT_RETRYABLE_CODES,
        retryable_statuses: Iterable[int] = DEFAULT_RETRYABLE_STATUSES,
        headers: Mapping[str, str] | None = None,
        max_response_size: int = 16 << 20,
        metrics: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(url) if isinstance(url, str) else None
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValidationError(
                f"JsonRpcClient.url must be an http:// or https:// URL; got {url!r}",
                field="JsonRpcClient.url",
                value=url,
            )
        limit = max_response_size
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(
                f"JsonRpcClient.max_response_size must be an int >= 1; got {limit!r}",
                field="JsonRpcClient.max_response_size",
                value=limit,
            )
        self.url = str(parsed)
        self.budget = config_or_default("JsonRpcClient.budget", budget, OutboundBudget)
        if target is None:
            # host:port, shortened as long metric labels are (a hash of the whole keeps
            # two long hosts apart), so that a valid URL always gives a valid target
            host = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
            target = shorten(host, MAX_TARGET_LENGTH)
        self.target = check_target("JsonRpcClient", target)
        self.retryable_codes = _ints("retryable_codes", retryable_codes)
        self.retryable_statuses = _ints("retryable_statuses", retryable_statuses)
        self.max_response_size = limit
        self._headers = {"content-type": "application/json", **dict(headers or {})}
        self._owned = client is None
        self._client = client if client is not None else httpx.AsyncClient()
        self._ids = itertools.count(1)
        self._metrics = http_metrics(registry) if metrics else None

    # -- handlers ------------------------------------------------------------------------
    def handler(self, method: str) -> Callable[[Any], Awaitable[Any]]:
        """A stepwatch handler calling ``method`` with the step's params.

        Raises:
            ValidationError: ``method`` is empty, not a string, or starts with ``rpc.``.
        """
        method = check_method(method)

        async def call(params: Any) -> Any:
            return await self.call(method, params)

        call.__name__ = call.__qualname__ = f"jsonrpc:{method}"
        return call

    def handlers(self, *methods: str) -> dict[str, Callable[[Any], Awaitable[Any]]]:
        """``{method: handler(method)}`` for each method, for ``FlowExecutor(handlers=...)``."""
        return {method: self.handler(method) for method in methods}

    # -- calls ---------------------------------------------------------------------------
    async def call(self, method: str, params: Any = None) -> Any:
        """Call ``method`` with ``params`` (a mapping, a list/tuple, or ``None`` = none)
        and return its result.

        Raises:
            JsonRpcError, JsonRpcTransportError, JsonRpcProtocolError: see the class.
            BudgetExhaustedError: the enclosing deadline leaves no time; nothing was sent.
                (A caller that is already cancelled gets its cancellation, as at any
                checkpoint; nothing is sent then either.)
            TypeError: ``params`` is neither a mapping nor a list/tuple, or holds values
                JSON cannot encode.
            ValueError: ``params`` holds NaN or an infinity (not valid JSON).
        """
        id_ = next(self._ids)
        status, body, deadline = await self._post(check_method(method), params, id_)
        return await self._answer(method, id_, status, body, deadline)

    async def notify(self, method: str, params: Any = None) -> None:
        """Send ``method`` as a notification (no answer expected beyond HTTP success).

        Raises:
            as :meth:`call`, for a failed HTTP exchange.
        """
        status, body, deadline = await self._post(check_method(method), params, None)
        if not 200 <= status < 300:
            await self._answer(method, None, status, body, deadline)

    async def aclose(self) -> None:
        """Close the httpx client if this object made it."""
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> JsonRpcClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- internals -----------------------------------------------------------------------
    async def _post(self, method: str, params: Any, id_: int | None) -> tuple[int, bytes, float]:
        payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            if isinstance(params, Mapping):
                payload["params"] = dict(params)
            elif isinstance(params, list | tuple):
                payload["params"] = list(params)
            else:
                raise TypeError(
                    "JSON-RPC params must be a mapping or a list/tuple; "
                    f"got {type(params).__name__}"
                )
        if id_ is not None:
            payload["id"] = id_
        content = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        request = self._client.build_request(
            "POST", self.url, content=content, headers=self._headers
        )
        await cancelled_caller()
        deadline = prepare(request, self.budget, self._metrics, self.target)
        try:
            response = await self._client.send(request, stream=True)
            try:
                body = await self._read(method, response)
            finally:
                await response.aclose()
        except BudgetExhaustedError:
            raise
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException):
                await deadline_wins(deadline)
            raise JsonRpcTransportError(
                f"{type(exc).__name__}: {clip(message_of(exc))}", method=method, url=self.url
            ) from exc
        return response.status_code, body, deadline

    async def _read(self, method: str, response: httpx.Response) -> bytes:
        """The answer's body, at most ``max_response_size`` bytes kept in memory.

        A larger declared Content-Length is refused before reading, and so is one that is
        not ASCII digits. A larger undeclared body is drained without keeping it (an
        async generator left half-iterated would warn on trio), bounded in time by the
        deadline and httpx's timeouts.
        """
        limit = self.max_response_size
        where: dict[str, Any] = {
            "method": method,
            "url": self.url,
            "http_status": response.status_code,
        }
        declared = response.headers.get("content-length")
        if declared is not None:
            declared = declared.strip()
            # h11 checks it, but not every transport does (httpx.MockTransport, ASGI);
            # str.isdigit() alone accepts "²", which int() refuses
            if not (declared.isascii() and declared.isdigit()):
                raise JsonRpcProtocolError(f"invalid Content-Length {declared[:40]!r}", **where)
        too_large = declared is not None and (len(declared) > 18 or int(declared) > limit)
        chunks: list[bytes] = []
        if not too_large:
            kept = 0
            async for chunk in response.aiter_bytes():
                if too_large:
                    continue  # drain, keep nothing
                kept += len(chunk)
                too_large = kept > limit
                chunks.append(chunk)
        if too_large:
            raise JsonRpcProtocolError(f"answer larger than {limit} bytes", **where)
        return b"".join(chunks)

    async def _answer(
        self, method: str, id_: int | None, status: int, body: bytes, deadline: float
    ) -> Any:
        try:
            return self._check(method, id_, status, body)
        except JsonRpcCallError as exc:
            code = exc.code if isinstance(exc, JsonRpcError) else None
            if status == 504 or code == JsonRpcCode.DEADLINE_EXCEEDED:
                await own_deadline_answered(deadline, cast("float", self.budget.margin))
            raise

    def _check(self, method: str, id_: int | None, status: int, body: bytes) -> Any:
        where: dict[str, Any] = {"method": method, "url": self.url, "http_status": status}
        overloaded = status in self.retryable_statuses
        try:
            message: Any = decode(body) if body else NO_ID  # NaN, Infinity: not JSON
        except (ValueError, RecursionError):
            message = NO_ID
        error = error_object(message, id_)
        if error is not None:
            code, text, data = error
            retryable = overloaded or code in self.retryable_codes
            raise JsonRpcError(code, text, data, retryable=retryable, **where)
        if not 200 <= status < 300:
            if overloaded:
                raise JsonRpcTransportError(f"HTTP {status} without a JSON-RPC answer", **where)
            raise JsonRpcProtocolError(f"HTTP {status} without a JSON-RPC error object", **where)
        return result_of(message, id_, where)
