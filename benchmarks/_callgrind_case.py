"""The script ``benchmarks/callgrind.py`` runs under ``valgrind --tool=callgrind``.

    python -m benchmarks._callgrind_case [--gc] VARIANT:N [VARIANT:N ...]

For each ``VARIANT:N`` (a method of :class:`benchmarks._fanout.Fanout`, N children) it
builds the case, runs it once to warm up (plans, labelled metric children, caches, lazy
imports), then runs it once more inside ``operator.call``: callgrind is started with
``--toggle-collect=_operator_call --dump-after=_operator_call``, so it counts exactly that
run and writes one dump per case, in the order of the arguments. Start-up, imports,
set-up and the warm-up are never counted, and the difference between N = 1 000 and N = 0
cancels the fixed cost of a run (the flow root, the parallel step, the task group, the
event loop's ``run``), leaving the cost per child.

Everything that could make two runs differ is pinned: ``PYTHONHASHSEED=0`` (set by the
caller), ``random.seed(0)`` (the OpenTelemetry SDK's span ids), the event loop's clock (frozen,
see :class:`FrozenClockLoop`), a span queue that never wakes the export thread, the
exemplar interval elapsed before the counted run (so every child takes its exemplar:
deterministic, and the worst case), the process environment (set by the caller), and by
default the garbage collector off during the counted run (``--gc`` keeps it on).

What is left varies by up to ≈ 0.3 % from one process to the next, in a few discrete
states: the heap layout differs slightly between processes (under valgrind too), and with
it the collisions in the hash tables of objects hashed by address (the task sets of
anyio and asyncio: ``set_add_entry``, ``set_table_resize``, ``_Py_dict_lookup`` are where
two runs differ).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import operator
import random
import sys
import time

from ._fanout import Fanout, make_tracer_provider
from ._logs import quiet_structlog

# The SDK span queue: big enough for every span of the warm-up and counted runs, so that
# the export thread sleeps throughout and the counted thread never wakes it.
BATCH = {
    "max_queue_size": 1_000_000,
    "max_export_batch_size": 1_000_000,
    "schedule_delay_millis": 3_600_000,
}
EXEMPLAR_INTERVAL = 1.0  # MetricsConfig().exemplar_interval
EXEMPLAR_VARIANTS = frozenset({"sw_full", "sw_defaults", "sw_sdk"})


class FrozenClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock (``loop.time()``, hence ``anyio.current_time()``) stands still.

    stepwatch makes a schedule point every 2 ms of a run (``stepwatch._checkpoints``):
    natively that is one yield per ≈ 60 children of this fan-out (< 0.1 % of a child's
    cost), under valgrind, ≈ 50× slower, one per child or two, and how many depends on the
    machine's load. With the clock frozen only the first boundary of a run yields, the same
    in every run. Nothing in these cases waits on a timer (the deadlines are 10 s and 20 s).
    """

    def __init__(self) -> None:
        super().__init__()
        self._frozen = super().time()

    def time(self) -> float:
        return self._frozen


def main(argv: list[str] | None = None) -> None:
    """Warm up and count each case given on the command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._callgrind_case")
    parser.add_argument("--gc", action="store_true", help="keep the collector on while counting")
    parser.add_argument("cases", nargs="+", metavar="VARIANT:N")
    args = parser.parse_args(argv)
    random.seed(0)
    quiet_structlog()
    provider = make_tracer_provider(**BATCH)
    fans: dict[int, Fanout] = {}
    with asyncio.Runner(loop_factory=FrozenClockLoop) as runner:
        for case in args.cases:
            variant, _, n_text = case.partition(":")
            n = int(n_text)
            fan = fans.get(n) or fans.setdefault(n, Fanout(n, provider))
            fn = getattr(fan, variant)
            runner.run(fn())  # warm-up
            if variant in EXEMPLAR_VARIANTS:  # every child's exemplar is due: same each run
                time.sleep(EXEMPLAR_INTERVAL * 1.2)
            gc.collect()
            if not args.gc:
                gc.disable()
            operator.call(runner.run, fn())  # counted
            gc.enable()
            print(case, flush=True)
    provider.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
