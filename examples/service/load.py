"""Bounded load for the example service, with scenarios that drive every alert and panel.

    python examples/service/load.py --url http://127.0.0.1:8000 --scenario all --duration 120
    python examples/service/load.py --url http://127.0.0.1:8000 --requests 300 --slow 0.3

A scenario sets the service's per-request knobs (see ``app.py``): which backends are slow,
fail, get stuck or run late, and the caller's deadline, sent as a budget header
(``x-request-timeout-ms`` or ``grpc-timeout``) like a deadline-propagating client would:
a budget of 100 ms, a budget already spent on arrival (``0``), or a budget of 5 ms (less
than the 10 ms the service keeps back when it calls its pricing backend).
``--scenario list`` prints them with the alerts and dashboard panels each one drives. The
script stops after ``--requests`` requests or ``--duration`` seconds, whichever comes
first; it never runs forever. Stop the load and every alert resolves.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

__all__ = ["SCENARIOS", "Scenario", "main", "run_load"]


STARVED_BUDGET_MS = 5
"""A caller's budget below the service's 10 ms margin for its pricing call."""


class Scenario:
    """Query parameters for the service's knobs, the callers' budgets, and what they make
    visible.

    ``params`` may hold ``budget``: the caller's deadline in seconds, sent by every
    ``every``-th request (0 = all). ``spent`` is the share of requests sent with a budget
    that is already spent (``0``), ``starved`` the share sent with 5 ms.
    """

    def __init__(
        self,
        params: dict[str, float],
        drives: str,
        every: int = 0,
        *,
        spent: float = 0.0,
        starved: float = 0.0,
    ) -> None:
        self.params = params
        self.drives = drives
        self.every = every
        self.spent = spent
        self.starved = starved

    def query(self, index: int) -> dict[str, float]:
        """The knobs of request number ``index`` (the query string)."""
        return {k: v for k, v in self.params.items() if k != "budget"}

    def budget(self, index: int, draw: float) -> tuple[str, dict[str, str]]:
        """The caller's budget for request number ``index``: (kind, headers), kind being
        ``spent``, ``starved``, ``budget`` or ``none``; ``draw`` is uniform in [0, 1)."""
        if draw < self.spent:  # both header formats, the way different clients send it
            header = ("grpc-timeout", "0m") if index % 2 else ("x-request-timeout-ms", "0")
            return "spent", dict([header])
        if draw < self.spent + self.starved:
            return "starved", {"grpc-timeout": f"{STARVED_BUDGET_MS}m"}
        seconds = self.params.get("budget")
        if seconds is not None and not (self.every and index % self.every):
            return "budget", {"x-request-timeout-ms": f"{seconds * 1000:g}"}
        return "none", {}


SCENARIOS: dict[str, Scenario] = {
    "steady": Scenario(
        {"slow": 0.02},
        "a healthy service: every panel has data, no alert fires",
    ),
    "timeouts": Scenario(
        {"slow": 0.4},
        "StepwatchTimeoutBudgetBurnFast/Slow (pricing hits its own timeout, enrich its group "
        "deadline); panels Timeout ratio by step, Parallel children cancelled by cause "
        "(deadline)",
    ),
    "flow-deadline": Scenario(
        {"slow": 0.02, "late": 0.3},
        "StepwatchFlowTimeoutBudgetBurnFast/Slow (fraud outlasts the 800 ms flow deadline); "
        "panels Flow timeouts per second, Flow timeout ratio, Flow duration p95 / p99",
    ),
    "near-budget": Scenario(
        {"slow": 0.02, "tight": 0.5},
        "StepwatchStepNearBudget (tax uses 80-88 % of its budget); panel Budget use p95 by step",
    ),
    "failures": Scenario(
        {"slow": 0.02, "fail": 0.2},
        "failure outcomes in Step throughput; Parallel children cancelled by cause "
        "(sibling_failure)",
    ),
    "stuck-threads": Scenario(
        {"slow": 0.02, "stuck": 0.15},
        "StepwatchAbandonedWorkersPilingUp (recommendations blocks its thread for 12 s); "
        "panel Abandoned worker threads",
    ),
    "loop-blocked": Scenario(
        {"slow": 0.02, "block": 0.1},
        "inventory holds the event loop past its deadline (an overrun); panel Overrun past "
        "the deadline by step (event loop held)",
    ),
    "spent-on-arrival": Scenario(
        {"slow": 0.02},
        "StepwatchInboundBudgetSpent (a fifth of the callers send a budget that is already "
        "spent: 504 at once, the flow never runs); panels Requests rejected: budget spent "
        "on arrival, Inbound requests by budget source, Inbound budget on arrival p50 / p10",
        spent=0.2,
    ),
    "starved": Scenario(
        {"slow": 0.02},
        "StepwatchOutboundNotSent (callers leave 5 ms, less than the 10 ms margin the "
        "service keeps for its pricing call: the call is not sent, HTTP 502); panels "
        "Outbound calls not sent for lack of budget, Time left when calling each "
        "downstream p50 / p10",
        starved=0.2,
    ),
    "caller-deadline": Scenario(
        {"slow": 0.3, "budget": 0.1},
        "cancellations with cause outside (the caller's 100 ms deadline) in Parallel "
        "children cancelled by cause and Step throughput",
        every=4,
    ),
    "all": Scenario(
        {
            "slow": 0.4,
            "late": 0.3,
            "tight": 0.5,
            "fail": 0.03,
            "stuck": 0.1,
            "budget": 0.1,
            "block": 0.03,
        },
        "every alert and every panel at once (quorum_met cancellations come with every "
        "request: the shipping quote takes the first of two carriers)",
        every=10,
        spent=0.2,
        starved=0.15,
    ),
}


def _one(
    url: str, params: dict[str, Any], headers: dict[str, str], timeout: float
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{url}/checkout?{urlencode(params)}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def run_load(
    url: str,
    requests: int = 100,
    concurrency: int = 8,
    slow: float = 0.3,
    timeout: float = 10.0,
    *,
    scenario: str | None = None,
    duration: float | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Send up to ``requests`` checkout requests, ``concurrency`` at a time, for at most
    ``duration`` seconds (or until ``stop`` is set); return counters (HTTP statuses,
    HTTP statuses by the kind of caller budget sent, e.g. ``spent:http_504``,
    non-succeeded step outcomes).

    Without ``scenario`` only ``slow`` is set, as in earlier versions of this script.
    """
    url = url.rstrip("/")
    plan = SCENARIOS[scenario] if scenario else Scenario({"slow": slow}, "")
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    numbers = itertools.count()
    stop_at = time.monotonic() + duration if duration is not None else float("inf")

    def worker() -> None:
        while True:
            with lock:
                index = next(numbers)
            if index >= requests or time.monotonic() >= stop_at:
                return
            if stop is not None and stop.is_set():
                return
            params = {"sku": f"A-{index % 7}", **plan.query(index)}
            kind, headers = plan.budget(index, random.random())
            status, body = _one(url, params, headers, timeout)
            with lock:
                counts[f"http_{status}"] += 1
                if kind != "none":
                    counts[f"{kind}:http_{status}"] += 1
                if body.get("degraded"):
                    counts["degraded"] += 1
                for name, outcome in body.get("outcomes", {}).items():
                    if outcome != "succeeded":
                        counts[f"{name}:{outcome}"] += 1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    parser.add_argument(
        "--requests", type=int, help="at most this many requests (default 300 without --duration)"
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--slow", type=float, default=0.3, help="probability a backend is slow")
    parser.add_argument("--scenario", help=f"one of {', '.join(SCENARIOS)} ('list' describes them)")
    args = parser.parse_args(argv)
    if args.scenario == "list":
        for name, plan in SCENARIOS.items():
            print(f"{name:16} {plan.params}\n{'':16} {plan.drives}")
        return 0
    if args.scenario is not None and args.scenario not in SCENARIOS:
        parser.error(f"unknown scenario {args.scenario!r}; --scenario list shows them")
    if args.requests is not None:
        requests = args.requests
    else:
        requests = 300 if args.duration is None else sys.maxsize
    started = time.monotonic()
    counts = run_load(
        args.url,
        requests,
        args.concurrency,
        args.slow,
        scenario=args.scenario,
        duration=args.duration,
    )
    took = time.monotonic() - started
    sent = sum(v for k, v in counts.items() if k.startswith("http_"))
    print(f"{sent} requests in {took:.1f} s ({sent / took:.0f}/s)")
    for key in sorted(counts):
        print(f"  {key:32} {counts[key]}")
    return 0 if sent else 1


if __name__ == "__main__":
    sys.exit(main())
