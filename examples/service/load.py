"""Bounded load for the example service, with scenarios that drive every alert and panel.

    python examples/service/load.py --url http://127.0.0.1:8000 --scenario all --duration 120
    python examples/service/load.py --url http://127.0.0.1:8000 --requests 300 --slow 0.3

A scenario sets the service's per-request knobs (see ``app.py``): which backends are slow,
fail, get stuck or run late, and the caller's deadline. ``--scenario list`` prints them
with the alerts and dashboard panels each one drives. The script stops after
``--requests`` requests or ``--duration`` seconds, whichever comes first; it never runs
forever. Stop the load and every alert resolves.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

__all__ = ["SCENARIOS", "Scenario", "main", "run_load"]


class Scenario:
    """Query parameters for the service's knobs, and what they make visible."""

    def __init__(self, params: dict[str, float], drives: str, every: int = 0) -> None:
        self.params = params
        self.drives = drives
        self.every = every  # with "budget": only every n-th request carries it (0 = all)

    def query(self, index: int) -> dict[str, float]:
        """The knobs of request number ``index``."""
        params = dict(self.params)
        if "budget" in params and self.every and index % self.every:
            del params["budget"]
        return params


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
    "caller-deadline": Scenario(
        {"slow": 0.3, "budget": 0.1},
        "cancellations with cause outside (the caller's 100 ms deadline) in Parallel "
        "children cancelled by cause and Step throughput",
        every=4,
    ),
    "all": Scenario(
        {
            "slow": 0.4, "late": 0.3, "tight": 0.5, "fail": 0.03, "stuck": 0.1,
            "budget": 0.1, "block": 0.03,
        },
        "every alert and every panel at once (quorum_met cancellations come with every "
        "request: the shipping quote takes the first of two carriers)",
        every=10,
    ),
}


def _one(url: str, params: dict[str, Any], timeout: float) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/checkout?{urlencode(params)}", timeout=timeout) as r:
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
            status, body = _one(url, params, timeout)
            with lock:
                counts[f"http_{status}"] += 1
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
