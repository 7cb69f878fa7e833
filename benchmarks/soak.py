"""Soak: run one million steps with random timeouts and check that memory stays flat.

Not part of CI (it takes a few minutes). Usage, from the repository root::

    .venv/bin/python benchmarks/soak.py                     # 1 000 000 steps, telemetry off
    .venv/bin/python benchmarks/soak.py --telemetry         # tracing (no-op exporter) + metrics
    .venv/bin/python benchmarks/soak.py --steps 200000 --backend trio

Every ``--report-every`` steps it prints the step count, the resident set size, the number
of objects the garbage collector tracks and the outcomes so far. At the end it compares
the memory after the warm-up (the first 20 % of the steps) with the memory at the end and
exits with status 1 if it grew by more than 10 % + 5 MiB (also when a run raised anything
but a stepwatch timeout/failure, or a handler task outlived its run).
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from stepwatch import (
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Sequence,
    StepEnded,
    StepwatchError,
)


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux), else the peak from resource."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * 4096 / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Soak:
    """Counts steps and outcomes, and live handler tasks."""

    def __init__(self) -> None:
        self.steps = 0
        self.live = 0
        self.outcomes: Counter[str] = Counter()

    def step_finished(self, record: StepEnded, /) -> None:
        outcome = record.outcome
        if outcome.step_type != "flow":
            self.steps += 1
            key = outcome.status.value
            if outcome.cause is not None:
                key += f"/{outcome.cause.value}"
            self.outcomes[key] += 1

    async def work(self, params: dict[str, Any]) -> str:
        self.live += 1
        try:
            await anyio.sleep(params["sleep"])
            if params["fail"]:
                raise RuntimeError("injected")
            return "ok"
        finally:
            self.live -= 1


def random_flow(rng: random.Random, serial: int) -> Flow:
    """A flow of 12 steps: a sequence holding a request and a 10-child parallel."""

    def timeout() -> float | None:
        return rng.choice([None, 0.001, 0.003, 0.01, 0.05, math.inf])

    children = [
        Request(
            f"c{i}",
            "work",
            {"sleep": rng.choice([0, 0.0005, 0.002, 0.02]), "fail": rng.random() < 0.05},
            timeout=timeout(),
        )
        for i in range(10)
    ]
    group = Parallel(
        "group",
        children,
        timeout=rng.choice([0.002, 0.005, 0.05]),
        on_timeout=rng.choice(["raise", "partial"]),
        fail_fast=rng.random() < 0.5,
        min_successes=rng.choice([None, None, 3]),
        max_concurrency=rng.choice([None, None, 4]),
    )
    first = Request("first", "work", {"sleep": 0, "fail": False}, timeout=timeout())
    return Flow(f"soak{serial % 5}", [Sequence("seq", [first, group])])


async def main_async(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    soak = Soak()
    options: dict[str, Any] = {"tracing": False, "metrics": False, "logging": False}
    provider = None
    if args.telemetry:
        from prometheus_client import CollectorRegistry

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from benchmarks._fanout import make_tracer_provider

        provider = make_tracer_provider()
        options = {"tracer_provider": provider, "registry": CollectorRegistry(), "logging": False}
    ex = FlowExecutor(handlers={"work": soak.work}, hooks=[soak], **options)
    pool = [random_flow(rng, i) for i in range(20)]
    unexpected: Counter[str] = Counter()
    serial = len(pool)
    started = time.perf_counter()
    next_report = args.report_every
    baseline: float | None = None
    samples: list[tuple[int, float]] = []

    async def one_run() -> None:
        nonlocal serial
        if rng.random() < 0.01:  # now and then a brand-new flow (plans must not pile up)
            serial += 1
            flow = random_flow(rng, serial)
        else:
            flow = rng.choice(pool)
        try:
            await ex.run(flow)
        except StepwatchError:
            pass
        except Exception as exc:  # pragma: no cover - reported below
            unexpected[type(exc).__name__] += 1

    print(f"{'steps':>10} {'s':>7} {'RSS MiB':>8} {'gc objects':>10}  outcomes", flush=True)
    while soak.steps < args.steps:
        async with anyio.create_task_group() as tg:
            for _ in range(args.concurrency):
                tg.start_soon(one_run)
        if soak.live:
            unexpected["handler task alive after run()"] += soak.live
        if soak.steps >= next_report:
            next_report += args.report_every
            gc.collect()
            rss = rss_mib()
            samples.append((soak.steps, rss))
            if baseline is None and soak.steps >= args.steps * 0.2:
                baseline = rss
            top = ", ".join(f"{k} {v}" for k, v in soak.outcomes.most_common(5))
            print(
                f"{soak.steps:>10} {time.perf_counter() - started:>7.1f} {rss:>8.1f} "
                f"{len(gc.get_objects()):>10}  {top}",
                flush=True,
            )
    if provider is not None:
        provider.shutdown()
    gc.collect()
    end = rss_mib()
    baseline = baseline if baseline is not None else (samples[0][1] if samples else end)
    grew = end - baseline
    flat = grew <= baseline * 0.10 + 5
    print(
        f"\n{soak.steps} steps in {time.perf_counter() - started:.1f} s; RSS after warm-up "
        f"{baseline:.1f} MiB, at the end {end:.1f} MiB ({grew:+.1f} MiB): "
        f"{'FLAT' if flat else 'GROWING'}"
    )
    if unexpected:
        print(f"unexpected: {dict(unexpected)}")
    return 0 if flat and not unexpected else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=50, help="runs at once")
    parser.add_argument("--report-every", type=int, default=100_000)
    parser.add_argument("--telemetry", action="store_true", help="tracing + metrics on")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    return anyio.run(main_async, args, backend=args.backend)


if __name__ == "__main__":
    sys.exit(main())
