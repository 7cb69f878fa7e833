"""Per-child overhead as instruction counts under ``valgrind --tool=callgrind``.

Usage (from the repository root, with the dev environment)::

    .venv/bin/python -m benchmarks.callgrind                   # measure, print the table
    .venv/bin/python -m benchmarks.callgrind --check           # compare with the baseline
    .venv/bin/python -m benchmarks.callgrind --update-baseline # rewrite the baseline file
    .venv/bin/python -m benchmarks.callgrind --repeats 2 --gc both   # the docs' stability runs

For every variant (a stepwatch fan-out and the same semantics written by hand, see
``_fanout.py``) the script ``_callgrind_case.py`` runs under callgrind: N = 1 000 and
N = 0 children, each warmed up and then counted alone (``--toggle-collect`` on
``operator.call``, one dump per counted run). Instructions per child = (Ir(1 000) −
Ir(0)) / 1 000: start-up, imports, the warm-up and the fixed cost of a run cancel out.
Instruction counts are not time (no cache misses, no memory bandwidth), but they are
deterministic: the same code gives the same count on a busy machine and a quiet one.

Timings are never asserted in tests; instruction counts are, by
``tests/benchmarks/test_callgrind.py`` against :data:`BASELINE` (see ``--check``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._env import ROOT, version

BASELINE = Path(__file__).resolve().parent / "callgrind_baseline.json"
N = 1000
MARGIN = 0.05
"""How much worse than the committed baseline a ratio may get before ``--check`` fails.

Repeated runs agree to ≈ 0.3 % (docs/benchmarks.md); 5 % leaves room for patch releases of
the libraries on both sides and still catches a regression of a few hundred instructions
per child."""
REFRESH = ".venv/bin/python -m benchmarks.callgrind --update-baseline"


@dataclass(frozen=True)
class Pair:
    """A stepwatch variant, its hand-written baseline and the issue-10 target.

    The report (``run.py``) judges each pair twice against the same target: as instruction
    counts here, and as wall-clock time, where ``timed`` names it with its baseline in full.
    """

    key: str
    what: str
    stepwatch: str
    baseline: str
    target: float
    timed: str


PAIRS = (
    Pair(
        "off",
        "telemetry off, group deadline only",
        "sw_off",
        "anyio",
        1.2,
        timed="telemetry off, group deadline only vs anyio TG + fail_after",
    ),
    Pair(
        "own",
        "telemetry off, per-child deadlines",
        "sw_off_own",
        "anyio_own",
        1.2,
        timed="telemetry off, per-child deadlines vs anyio TG + fail_after per child",
    ),
    Pair(
        "defaults",
        "defaults (metrics, no SDK provider, logging) vs + one observe",
        "sw_defaults",
        "anyio_hist",
        1.2,
        timed="defaults (metrics, no SDK provider, logging) vs anyio + one histogram observe "
        "per child",
    ),
    Pair(
        "sdk",
        "SDK TracerProvider + metrics vs + one raw span + one raw observe",
        "sw_sdk",
        "anyio_span_hist",
        1.25,
        timed="SDK TracerProvider + metrics vs anyio + one raw SDK span + one raw observe "
        "per child",
    ),
)
VARIANTS = tuple(v for p in PAIRS for v in (p.stepwatch, p.baseline))
# Two valgrind processes of about the same length (≈ equal sums of instructions); the
# split is fixed so that every measurement runs each variant in the same company.
GROUPS = (
    ("sw_sdk", "anyio_span_hist", "sw_off"),
    ("sw_defaults", "sw_off_own", "anyio_own", "anyio_hist", "anyio"),
)
VERSIONS = ("anyio", "opentelemetry-sdk", "prometheus-client", "structlog")

# The whole environment of the counted process, fixed: Python copies it into os.environ,
# and a variable of another length (PYTEST_CURRENT_TEST, a tox PATH, coverage's settings)
# shifts the heap layout, and with it the collisions in sets of objects hashed by address.
ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
}

_SUMMARY = re.compile(rb"^summary: (\d+)", re.MULTILINE)


def valgrind() -> str | None:
    """Path of the valgrind binary, or None."""
    return shutil.which("valgrind")


def _run(cases: list[str], gc: bool, python: str) -> dict[str, int]:
    """Count each ``variant:n`` case in one valgrind process; returns case → Ir."""
    vg = valgrind()
    if vg is None:
        raise RuntimeError("valgrind not found (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="stepwatch-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = [
            vg,
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=_operator_call",
            "--dump-after=_operator_call",
            "--dump-instr=no",
            f"--callgrind-out-file={out}",
            python,
            "-m",
            "benchmarks._callgrind_case",
            *(["--gc"] if gc else []),
            *cases,
        ]
        env = dict(ENV)
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"callgrind run failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}"
            )
        counts = {}
        for i, case in enumerate(cases, start=1):
            match = _SUMMARY.search(Path(f"{out}.{i}").read_bytes())
            if match is None:
                raise RuntimeError(f"no summary in dump {i} ({case})")
            counts[case] = int(match.group(1))
        return counts


def measure(*, gc: bool = False, jobs: int = 2, python: str = sys.executable) -> dict[str, float]:
    """Instructions per child of every variant.

    ``jobs=2``: the two :data:`GROUPS` in two valgrind processes at once; ``jobs=1``: all
    variants in one process, one after the other.
    """
    groups = GROUPS if jobs > 1 else (tuple(v for g in GROUPS for v in g),)
    cases = [[f"{v}:{n}" for v in group for n in (0, N)] for group in groups]
    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(lambda c: _run(c, gc, python), cases))
    counts = {k: v for r in results for k, v in r.items()}
    return {v: (counts[f"{v}:{N}"] - counts[f"{v}:0"]) / N for v in VARIANTS}


def ratios(per_child: dict[str, float]) -> dict[str, float]:
    """stepwatch / hand-written, per pair."""
    return {p.key: per_child[p.stepwatch] / per_child[p.baseline] for p in PAIRS}


def versions() -> dict[str, str]:
    """Python and library versions the counts depend on."""
    out = {"python": ".".join(map(str, sys.version_info[:3]))}
    out.update((name, version(name)) for name in VERSIONS)
    return out


def write_baseline(per_child: dict[str, float], path: Path = BASELINE) -> dict[str, Any]:
    """Write the baseline file from fresh counts; returns what was written."""
    r = ratios(per_child)
    data = {
        "comment": f"instructions per child (N={N}, GC off) under callgrind; refresh: {REFRESH}",
        "versions": versions(),
        "n": N,
        "margin": MARGIN,
        "per_child": {v: round(per_child[v]) for v in VARIANTS},
        "pairs": {
            p.key: {
                "what": p.what,
                "stepwatch": p.stepwatch,
                "baseline": p.baseline,
                "ratio": round(r[p.key], 4),
                "target": p.target,
                "target_met": r[p.key] <= p.target,
            }
            for p in PAIRS
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def load_baseline(path: Path = BASELINE) -> dict[str, Any]:
    """The committed baseline."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def check(per_child: dict[str, float], baseline: dict[str, Any]) -> list[str]:
    """Problems with fresh counts against the baseline (empty: all good).

    A ratio may never be more than ``margin`` worse than the baseline's; a target the
    baseline meets must stay met. A target the baseline still misses is reported by
    :func:`misses`, not here.
    """
    problems = []
    now = ratios(per_child)
    margin = float(baseline["margin"])
    for p in PAIRS:
        base = baseline["pairs"][p.key]
        ratio = now[p.key]
        if ratio > base["ratio"] * (1 + margin):
            problems.append(
                f"{p.key} ({p.what}): {ratio:.3f}× is more than {margin:.0%} worse than the "
                f"baseline's {base['ratio']:.3f}× ({per_child[p.stepwatch]:,.0f} vs "
                f"{per_child[p.baseline]:,.0f} instructions per child)"
            )
        if base["target_met"] and ratio > p.target:
            problems.append(
                f"{p.key} ({p.what}): {ratio:.3f}× exceeds its target {p.target}× "
                "(met by the baseline)"
            )
    return problems


def misses(per_child: dict[str, float], baseline: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(targets still missed, as the baseline records; targets the baseline missed, now met)."""
    now = ratios(per_child)
    missed, newly_met = [], []
    for p in PAIRS:
        if baseline["pairs"][p.key]["target_met"]:
            continue
        if now[p.key] > p.target:
            missed.append(f"{p.key}: {now[p.key]:.3f}× > {p.target}×")
        else:
            newly_met.append(f"{p.key}: {now[p.key]:.3f}× ≤ {p.target}× (refresh: {REFRESH})")
    return missed, newly_met


def table(runs: list[dict[str, float]], label: str) -> list[str]:
    """Markdown rows: per pair, instructions per child and ratio, with the spread over runs."""
    lines = [
        f"| case ({label}) | stepwatch Ir/child | hand-written Ir/child | ratio | spread "
        "of the ratio | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    per_run = [ratios(r) for r in runs]
    for p in PAIRS:
        sw = [r[p.stepwatch] for r in runs]
        hand = [r[p.baseline] for r in runs]
        rs = [r[p.key] for r in per_run]
        spread = (max(rs) - min(rs)) / min(rs)
        lines.append(
            f"| {p.what} | {_range(sw)} | {_range(hand)} | {sum(rs) / len(rs):.3f}× | "
            f"{spread:.3%} | ≤ {p.target}× |"
        )
    return lines


def _range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:,.0f}" if hi - lo < 0.5 else f"{lo:,.0f}–{hi:,.0f}"


class _Hog:
    """A busy loop on another core while a measurement runs (to show counts ignore load)."""

    def __enter__(self) -> _Hog:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


METHOD = (
    "Per child of a 1 000-child fan-out, as instructions executed (`valgrind "
    "--tool=callgrind`, Ir), for the same stepwatch and hand-written variants as the "
    "wall-clock tables (`_fanout.py`), on asyncio (anyio's asyncio backend: the ratios "
    "compare stepwatch with the same primitives on the same loop, so one backend is "
    "enough). Each variant runs at N = 1 000 and at N = 0 (a `Parallel` with no "
    "children is valid and still pays the run's fixed cost: the flow root, the parallel "
    "step, the task group), each warmed up once and then counted alone (`--toggle-collect` "
    "on `operator.call`, which wraps only the counted `run`); Ir per child = (Ir(1 000) − "
    "Ir(0)) / 1 000, so interpreter start-up, imports, set-up and the fixed cost of a run "
    "cancel out. Pinned: `PYTHONHASHSEED=0`, `random.seed(0)` (span ids), the event loop's "
    "clock frozen during the run (stepwatch's time-based schedule point, every 2 ms of a "
    "run, would fire ≈ 50× too often under valgrind and at a rate that follows the load; "
    "natively it is < 0.1 % of a child), a span queue that never wakes the export thread, "
    "and the exemplar interval elapsed before the counted run (every child's exemplar is "
    "due: the worst case, the same every time). The garbage collector is off during the "
    "counted run for the committed figures: with it on the counts are as repeatable, but a "
    "generation-1 collection moves into or out of the run when a change shifts the "
    "allocation count slightly, a step that is not the per-child cost (the GC-on table shows "
    "what collections add). Instructions are not time (no cache misses, no memory "
    "bandwidth: anyio's bare task group keeps all 1 000 tasks alive at once, stepwatch "
    "yields every 32 starts), so these ratios can differ from the wall-clock ones; they "
    "are the repeatable measure of the interpreter work per child."
)


def report_section(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    """The docs/benchmarks.md section; returns (lines, Ir per child of the first run)."""
    started = time.perf_counter()
    runs: list[dict[str, float]] = []
    loads: list[str] = []
    loads.append(f"{os.getloadavg()[0]:.2f}")
    runs.append(measure())
    if not quick:
        with _Hog():
            loads.append(f"{os.getloadavg()[0]:.2f} + a busy loop")
            runs.append(measure())
    gc_on = None if quick else measure(gc=True)
    lines = [
        "## Instruction counts (callgrind)",
        "",
        METHOD,
        "",
        f"GC off, {len(runs)} run(s) (load at the start of each: {'; '.join(loads)})"
        + (
            "; the second with a busy loop on the other core, beside the two valgrind "
            "processes. Spread = (max − min) / min of the ratio over the runs."
            if len(runs) > 1
            else "."
        ),
        "",
        *table(runs, "GC off"),
        "",
    ]
    if gc_on is not None:
        lines += ["GC on, one run:", "", *table([gc_on], "GC on"), ""]
    lines += [
        f"Committed baseline for the CI check: `benchmarks/{BASELINE.name}` (refresh: "
        f"`{REFRESH}`). This section took {time.perf_counter() - started:.0f} s.",
        "",
    ]
    return lines, runs[0]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.callgrind", description=__doc__)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="fail if worse than the baseline")
    action.add_argument("--update-baseline", action="store_true", help=f"rewrite {BASELINE.name}")
    parser.add_argument("--repeats", type=int, default=1, help="measure this many times")
    parser.add_argument("--gc", choices=("off", "on", "both"), default="off")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind processes in parallel")
    args = parser.parse_args(argv)
    if valgrind() is None:
        print("valgrind not found", file=sys.stderr)
        return 2
    started = time.perf_counter()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.gc]
    if args.check or args.update_baseline:
        modes = [False]
    results: dict[bool, list[dict[str, float]]] = {}
    for gc in modes:
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            per_child = measure(gc=gc, jobs=args.jobs)
            results.setdefault(gc, []).append(per_child)
            print(
                f"# GC {'on' if gc else 'off'}, load {load:.2f}: "
                + ", ".join(f"{v} {per_child[v]:,.0f}" for v in VARIANTS),
                flush=True,
            )
    for gc, runs in results.items():
        print("\n".join(["", *table(runs, f"GC {'on' if gc else 'off'}")]))
    print(f"\n{time.perf_counter() - started:.0f} s")
    counted = results[False][0] if False in results else None
    if args.update_baseline and counted is not None:
        write_baseline(counted)
        print(f"wrote {BASELINE}")
    if args.check and counted is not None:
        baseline = load_baseline()
        problems = check(counted, baseline)
        missed, newly_met = misses(counted, baseline)
        for line in missed:
            print(f"target still missed (as in the baseline): {line}")
        for line in newly_met:
            print(f"target now met: {line}")
        for line in problems:
            print(f"FAIL {line}")
        return 1 if problems or newly_met else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
