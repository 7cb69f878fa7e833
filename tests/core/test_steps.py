"""Each built-in step type computes the documented value."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from stepwatch import (
    Branch,
    Delay,
    Flow,
    FlowExecutor,
    Loop,
    Parallel,
    Request,
    Sequence,
    StepContext,
    StepFailedError,
    Transform,
)

pytestmark = pytest.mark.anyio


async def echo(params: Any) -> Any:
    await anyio.sleep(0)
    return params


def sync_echo(params: Any) -> Any:
    return {"thread": threading.current_thread() is not threading.main_thread(), "p": params}


EX = FlowExecutor(handlers={"echo": echo, "sync": sync_echo})


class TestRequest:
    async def test_static_params(self) -> None:
        """Static params are passed to the handler as they are."""
        result = await EX.run(Flow("f", Request("r", "echo", {"sku": 1})))
        assert result["r"] == {"sku": 1}
        assert result.output == {"sku": 1}

    async def test_params_from_input_and_earlier_results(self) -> None:
        """Callable params see the flow input and earlier results."""
        flow = Flow(
            "f",
            [
                Request("user", "echo", lambda ctx: {"id": ctx.input["user"]}),
                Request("cart", "echo", lambda ctx: {"owner": ctx.results["user"]["id"]}),
            ],
        )
        result = await EX.run(flow, input={"user": 7})
        assert result["cart"] == {"owner": 7}
        assert result.input == {"user": 7}

    async def test_async_params(self) -> None:
        """An async params callable is awaited."""

        async def params(ctx: StepContext) -> int:
            return 5

        assert (await EX.run(Flow("f", Request("r", "echo", params))))["r"] == 5

    async def test_sync_handler_runs_in_a_worker_thread(self) -> None:
        """A sync handler runs off the event loop thread."""
        result = await EX.run(Flow("f", Request("r", "sync", 1)))
        assert result["r"] == {"thread": True, "p": 1}

    async def test_handler_error_is_wrapped_with_the_step_name(self) -> None:
        """A handler's exception becomes StepFailedError naming the step, cause kept."""
        ex = FlowExecutor(handlers={"bad": lambda p: 1 / 0})
        with pytest.raises(StepFailedError, match=r"request step 'r' failed: ZeroDivisionError"):
            await ex.run(Flow("f", Request("r", "bad")))


class TestComposites:
    async def test_transform_sync_async_inline(self) -> None:
        """Transforms may be async, sync (worker thread) or sync inline."""

        async def double(ctx: StepContext) -> int:
            return int(ctx.results["n"]) * 2

        flow = Flow(
            "f",
            [
                Transform("n", lambda ctx: ctx.input),
                Transform("d", double),
                Transform(
                    "inline",
                    lambda ctx: threading.current_thread() is threading.main_thread(),
                    inline=True,
                ),
            ],
        )
        result = await EX.run(flow, input=21)
        assert (result["n"], result["d"], result["inline"]) == (21, 42, True)

    async def test_sequence_value_is_children_by_name(self) -> None:
        """A sequence's value maps each child's name to its value, in order."""
        flow = Flow("f", Sequence("s", [Request("a", "echo", 1), Request("b", "echo", 2)]))
        result = await EX.run(flow)
        assert list(result["s"].items()) == [("a", 1), ("b", 2)]

    async def test_parallel_value_in_declaration_order(self) -> None:
        """A parallel's value is in declaration order whatever the finishing order."""

        async def wait(params: float) -> float:
            await anyio.sleep(params)
            return params

        ex = FlowExecutor(handlers={"wait": wait})
        flow = Flow(
            "f", Parallel("p", [Request("slow", "wait", 0.05), Request("quick", "wait", 0)])
        )
        result = await ex.run(flow)
        assert list(result["p"]) == ["slow", "quick"]

    @pytest.mark.parametrize(("flag", "expected"), [(True, "yes"), (False, "no")])
    async def test_branch_chooses(self, flag: bool, expected: str) -> None:
        """A branch runs `then` or `otherwise` from its condition."""
        flow = Flow(
            "f",
            Branch(
                "b",
                lambda ctx: ctx.input,
                Request("yes", "echo", "yes"),
                Request("no", "echo", "no"),
            ),
        )
        result = await EX.run(flow, input=flag)
        assert result["b"] == expected
        assert (("yes" in result.outcomes), ("no" in result.outcomes)) == (flag, not flag)

    async def test_branch_without_otherwise(self) -> None:
        """A false condition without `otherwise` gives None."""
        flow = Flow("f", Branch("b", lambda ctx: False, Request("yes", "echo", 1)))
        assert (await EX.run(flow))["b"] is None

    async def test_loop_times_and_condition(self) -> None:
        """A loop collects its body's values; condition sees the iteration number."""
        body = Transform("body", lambda ctx: ctx.iteration, inline=True)
        flow = Flow("f", Loop("l", body, condition=lambda ctx: ctx.iteration < 3))
        assert (await EX.run(flow))["l"] == [0, 1, 2]
        flow2 = Flow("f", Loop("l", Transform("b2", lambda ctx: "x", inline=True), times=2))
        assert (await EX.run(flow2))["l"] == ["x", "x"]

    async def test_delay_step(self) -> None:
        """A delay returns None after sleeping."""
        result = await EX.run(Flow("f", Delay("d", 0.001)))
        assert result["d"] is None

    async def test_missing_value_is_explained(self) -> None:
        """Reading a value a step did not produce says why."""
        ex = FlowExecutor(handlers={"slow": lambda p: anyio.sleep(1)})
        flow = Flow("f", Parallel("p", [Delay("d", 5)], timeout=0.01, on_timeout="partial"))
        result = await ex.run(flow)
        with pytest.raises(KeyError, match="step 'd' has no value: it ended cancelled"):
            result["d"]
        with pytest.raises(KeyError, match="no step named 'zzz'"):
            result["zzz"]
