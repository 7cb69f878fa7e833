"""JSON-RPC error codes and the errors a JSON-RPC call raises.

::

    JsonRpcCallError                 a JSON-RPC call failed; .method, .url, .http_status,
    │                                .retryable (honoured by stepwatch's retry predicate)
    ├── JsonRpcError                 the server answered with an error object: .code,
    │                                .message, .data; retryable for codes the client
    │                                treats as overload/deadline (default: -32001) and for
    │                                HTTP 429/502/503/504
    ├── JsonRpcTransportError        no usable answer: connection failure, timeout, or
    │                                HTTP 429/502/503/504 without an error object (retryable)
    └── JsonRpcProtocolError         the answer is not a valid JSON-RPC 2.0 response to
                                     this call (bad JSON, wrong id, ...); not retryable

Inside a stepwatch flow they reach the caller as the ``__cause__`` of a
:class:`stepwatch.StepFailedError` that names the step and copies ``retryable``. The
outbound "no time left" error is :class:`stepwatch.http.BudgetExhaustedError` (an
``httpx.TimeoutException``, retryable), raised before anything is sent.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "JsonRpcCallError",
    "JsonRpcCode",
    "JsonRpcError",
    "JsonRpcProtocolError",
    "JsonRpcTransportError",
]


class JsonRpcCode(enum.IntEnum):
    """Error codes of the JSON-RPC 2.0 specification, and the one stepwatch adds."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    DEADLINE_EXCEEDED = -32001
    """stepwatch's server: the request's time budget was spent or ran out (HTTP 504)."""


class JsonRpcCallError(Exception):
    """A JSON-RPC call failed (base class).

    Attributes:
        method: the JSON-RPC method called, if known.
        url: the endpoint, if known.
        http_status: the HTTP status of the answer, if there was one.
        retryable: whether the same call may succeed if tried again.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        http_status: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.http_status = http_status
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return f"{self._where()}{self.args[0]}"

    def _where(self) -> str:
        if self.method is None:
            return ""
        return f"{self.method!r} at {self.url}: " if self.url else f"{self.method!r}: "


class JsonRpcError(JsonRpcCallError):
    """A JSON-RPC error object, received by a client or raised by a server method.

    Raise it in a method served by :class:`JsonRpcApp` to answer with this error object.

    Args:
        code: the error code (an int; see :class:`JsonRpcCode`).
        message: the short description.
        data: extra JSON-serialisable information (``None`` = omitted).

    Attributes:
        code, message, data: as received; plus those of :class:`JsonRpcCallError`.
    """

    def __init__(
        self,
        code: int,
        message: str,
        data: Any = None,
        *,
        method: str | None = None,
        url: str | None = None,
        http_status: int | None = None,
        retryable: bool = False,
    ) -> None:
        self.code = code
        self.message = message
        self.data = data
        super().__init__(
            message, method=method, url=url, http_status=http_status, retryable=retryable
        )

    def __str__(self) -> str:
        return f"{self._where()}JSON-RPC error {self.code}: {self.message}"

    def to_object(self) -> dict[str, Any]:
        """The JSON-RPC error object (``code``, ``message`` and ``data`` if not ``None``)."""
        found: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.data is not None:
            found["data"] = self.data
        return found


class JsonRpcTransportError(JsonRpcCallError):
    """No usable answer: the connection failed, httpx timed out, or the server answered
    HTTP 429/502/503/504 without a JSON-RPC error object. Retryable by default."""

    retryable = True


class JsonRpcProtocolError(JsonRpcCallError):
    """The answer is not a valid JSON-RPC 2.0 response to this call (not JSON, not an
    object, wrong ``jsonrpc`` version, ``id`` mismatch, both or neither of ``result`` and
    ``error``, malformed error object, too large). Not retryable."""
