"""Bounded load for the example service: N checkout requests, part of the children slow.

    python examples/service/load.py --url http://127.0.0.1:8000 --requests 300 --slow 0.3

``--slow`` is the probability that each of the slow-capable backends (pricing, reviews,
recommendations) is slow on a request, so about that share of those children time out,
are cancelled at the group deadline or are abandoned. Prints a summary and exits; it
never runs forever.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["main", "run_load"]


def _one(url: str, slow: float, sku: str, timeout: float) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/checkout?sku={sku}&slow={slow}", timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def run_load(
    url: str, requests: int = 100, concurrency: int = 8, slow: float = 0.3, timeout: float = 10.0
) -> dict[str, int]:
    """Send ``requests`` checkout requests, ``concurrency`` at a time; return counters."""
    url = url.rstrip("/")
    counts: collections.Counter[str] = collections.Counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(_one, url, slow, f"A-{i % 7}", timeout) for i in range(requests)]
        for future in futures:
            status, body = future.result()
            counts[f"http_{status}"] += 1
            if body.get("degraded"):
                counts["degraded"] += 1
            for name, outcome in body.get("outcomes", {}).items():
                if outcome != "succeeded":
                    counts[f"{name}:{outcome}"] += 1
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    parser.add_argument("--requests", type=int, default=300, help="number of requests")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--slow", type=float, default=0.3, help="probability a backend is slow")
    args = parser.parse_args(argv)
    started = time.monotonic()
    counts = run_load(args.url, args.requests, args.concurrency, args.slow)
    took = time.monotonic() - started
    print(f"{args.requests} requests in {took:.1f} s ({args.requests / took:.0f}/s)")
    for key in sorted(counts):
        print(f"  {key:32} {counts[key]}")
    return 0 if counts.get("http_200", 0) else 1


if __name__ == "__main__":
    sys.exit(main())
