"""Deadlines that cross service boundaries: inbound budget, outbound propagation, JSON-RPC.

* :class:`DeadlineMiddleware` (ASGI) runs each request under the caller's time budget.
* :class:`DeadlineTransport` (httpx) sends the time left on, and nothing too late.
* :class:`JsonRpcClient` turns a JSON-RPC 2.0 endpoint into stepwatch handlers;
  :class:`JsonRpcApp` serves async functions as one.

The ASGI side needs nothing beyond stepwatch; :class:`DeadlineTransport`,
:class:`BudgetExhaustedError` and :class:`JsonRpcClient` need httpx
(``pip install 'stepwatch[http]'``) and import it on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._public import publish as _publish
from ._config import GRPC_TIMEOUT, REQUEST_TIMEOUT_MS, InboundBudget, OutboundBudget
from ._errors import (
    JsonRpcCallError,
    JsonRpcCode,
    JsonRpcError,
    JsonRpcProtocolError,
    JsonRpcTransportError,
)
from ._jsonrpc_server import JsonRpcApp
from ._middleware import DeadlineMiddleware
from ._telemetry import HTTP_METRIC_NAMES

if TYPE_CHECKING:
    from ._jsonrpc_client import JsonRpcClient
    from ._outbound import BudgetExhaustedError, DeadlineTransport

__all__ = [
    "GRPC_TIMEOUT",
    "HTTP_METRIC_NAMES",
    "REQUEST_TIMEOUT_MS",
    "BudgetExhaustedError",
    "DeadlineMiddleware",
    "DeadlineTransport",
    "InboundBudget",
    "JsonRpcApp",
    "JsonRpcCallError",
    "JsonRpcClient",
    "JsonRpcCode",
    "JsonRpcError",
    "JsonRpcProtocolError",
    "JsonRpcTransportError",
    "OutboundBudget",
]

_publish(globals(), __all__, __name__)

_NEEDS_HTTPX = {
    "BudgetExhaustedError": "._outbound",
    "DeadlineTransport": "._outbound",
    "JsonRpcClient": "._jsonrpc_client",
}


def __getattr__(name: str) -> Any:
    module = _NEEDS_HTTPX.get(name)
    if module is None:
        raise AttributeError(f"module 'stepwatch.http' has no attribute {name!r}")
    try:
        found = getattr(importlib.import_module(module, __name__), name)
    except ImportError as exc:
        if exc.name != "httpx" and not (exc.name or "").startswith("httpx."):
            raise
        raise ImportError(
            f"stepwatch.http.{name} needs httpx, which is not installed: "
            "pip install 'stepwatch[http]'",
            name=exc.name,
        ) from exc
    globals()[name] = found
    return found


def __dir__() -> list[str]:
    return sorted(__all__)
