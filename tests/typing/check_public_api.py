"""Exercises the public API under mypy --strict (checked by `dev.py test`, not run)."""

from __future__ import annotations

import math
from datetime import timedelta

from stepwatch import (
    RETRYABLE_STATUSES,
    CancelCause,
    ErrorCode,
    Flow,
    FlowExecutor,
    Outcome,
    Parallel,
    Request,
    Retry,
    RunResult,
    Status,
    StepContext,
    StepTimeoutError,
    TimeoutOptions,
    Transform,
    is_retryable,
    retry_after,
)


async def inventory(params: dict[str, str]) -> dict[str, int]:
    return {"stock": 3}


def sync_price(params: object) -> float:
    return 9.5


def total(ctx: StepContext) -> float:
    return float(ctx.results["price"]) * 2


async def typed_usage() -> None:
    executor = FlowExecutor(
        handlers={"inventory": inventory, "price": sync_price},
        timeouts=TimeoutOptions(5, request=timedelta(milliseconds=500)),
    )
    flow = Flow(
        "checkout",
        [
            Parallel(
                "enrich",
                [
                    Request("inventory", "inventory", {"sku": "A"}, retry=Retry(attempts=2)),
                    Request("price", "price", timeout=math.inf, fallback=0.0),
                ],
                timeout=0.2,
                on_timeout="partial",
                min_successes=1,
            ),
            Transform("total", total, inline=True),
        ],
        timeout=1.0,
    )
    try:
        result: RunResult = await executor.run(flow, input={"user": 1})
    except StepTimeoutError as exc:
        code: ErrorCode = exc.code
        pending: tuple[str, ...] = exc.pending
        assert code is ErrorCode.TIMEOUT and pending
        # a run's error carries a non-optional result: no None check needed
        cut: CancelCause | None = exc.result.outcomes["price"].cause
        assert cut is not None
        return
    outcome: Outcome = result.outcomes["price"]
    status: Status = outcome.status
    cause: CancelCause | None = outcome.cause
    elapsed: float = outcome.elapsed
    assert status and elapsed >= 0 and cause is None


def degrade_and_retry_usage() -> Flow:
    def also_500(exc: BaseException) -> bool:
        return is_retryable(exc) or getattr(exc, "status", None) == 500

    wait: float | None = retry_after(ValueError())
    statuses: frozenset[int] = RETRYABLE_STATUSES
    assert wait is None and 503 in statuses
    return Flow(
        "page",
        Parallel(
            "backends",
            [
                Request("a", "a", retry=Retry(retry_on=also_500, respect_retry_after=False)),
                Request("b", "b", fallback={}, fallback_on=("timeout", "failure")),
                Request("c", "c", fallback=None, fallback_on="failure"),
            ],
            on_timeout="partial",
            on_failure="partial",
            fail_fast=None,
        ),
    )
