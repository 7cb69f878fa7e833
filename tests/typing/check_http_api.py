"""Exercises stepwatch.http under mypy --strict (checked by `dev.py test`, not run)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from stepwatch import Flow, FlowExecutor, Request, StepFailedError
from stepwatch.http import (
    GRPC_TIMEOUT,
    BudgetExhaustedError,
    DeadlineMiddleware,
    DeadlineTransport,
    InboundBudget,
    JsonRpcApp,
    JsonRpcClient,
    JsonRpcCode,
    JsonRpcError,
    OutboundBudget,
)


async def quote(sku: str, qty: int = 1) -> dict[str, float]:
    if qty < 1:
        raise JsonRpcError(JsonRpcCode.INVALID_PARAMS, "qty must be >= 1", {"qty": qty})
    return {"price": 2.5 * qty}


async def app(scope: Any, receive: Any, send: Any) -> None:
    return None


def servers() -> tuple[DeadlineMiddleware, JsonRpcApp]:
    budget = InboundBudget(default=timedelta(seconds=2), max_budget=10, on_invalid="reject")
    header: str | None = budget.grpc_header
    assert header == GRPC_TIMEOUT
    return DeadlineMiddleware(app, budget), JsonRpcApp({"pricing.quote": quote}, budget=budget)


async def client_side() -> float:
    budget = OutboundBudget(margin=0.02, ms_header="x-envoy-expected-rq-timeout-ms")
    transport = DeadlineTransport(httpx.AsyncHTTPTransport(), budget=budget, target="pricing")
    async with httpx.AsyncClient(transport=transport) as http:
        pricing = JsonRpcClient("http://pricing:8000/rpc", http, target="pricing")
        executor = FlowExecutor(handlers=pricing.handlers("pricing.quote"))
        flow = Flow("page", [Request("price", "pricing.quote", {"sku": "A"}, timeout=0.2)])
        try:
            result = await executor.run(flow)
        except StepFailedError as exc:
            cause = exc.__cause__
            if isinstance(cause, JsonRpcError):
                code: int = cause.code
                return float(code)
            if isinstance(cause, BudgetExhaustedError):
                left: float = cause.time_left
                return left
            raise
        value: Any = await pricing.call("pricing.quote", {"sku": "B"})
        await pricing.notify("pricing.touch", ["B"])
        return float(result["price"]["price"]) + float(value["price"])
