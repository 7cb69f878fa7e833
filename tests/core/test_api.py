"""The public API surface."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any

import pytest

import stepwatch
from stepwatch import FlowExecutor, Request, StepFailedError, ValidationError

SUBMODULES = {"dashboards", "executors", "http", "telemetry", "testing"}
PUBLIC_MODULES = ["stepwatch", *(f"stepwatch.{name}" for name in sorted(SUBMODULES))]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_matches_public_names(name: str) -> None:
    """Each public module's __all__ lists exactly the public names it defines (no
    internal helper exported, none forgotten)."""
    module = importlib.import_module(name)
    public = {
        attr
        for attr, obj in vars(module).items()
        if not attr.startswith("_")
        and attr not in {"TYPE_CHECKING", "annotations"}
        and not isinstance(obj, ModuleType)
        and str(getattr(obj, "__module__", name)).startswith(name)  # defined here
    }
    assert set(module.__all__) >= public - SUBMODULES, sorted(public - set(module.__all__))
    for attr in module.__all__:
        assert hasattr(module, attr), attr


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_names_show_their_public_module(name: str) -> None:
    """Classes exported by a public module say that module, never a private one."""
    module = importlib.import_module(name)
    for attr in module.__all__:
        if name == "stepwatch.http" and attr in {
            "BudgetExhaustedError",
            "DeadlineTransport",
            "JsonRpcClient",
        }:
            continue  # need httpx: imported on first use
        obj = getattr(module, attr)
        if isinstance(obj, type):
            assert obj.__module__.startswith(name), (attr, obj.__module__)
            assert "._" not in obj.__module__, (attr, obj.__module__)


def test_telemetry_exports_no_internal_helper() -> None:
    """stepwatch.telemetry exports only what users configure or call."""
    import stepwatch.telemetry

    assert set(stepwatch.telemetry.__all__) == {
        "MetricsConfig",
        "TracingConfig",
        "add_trace_ids",
        "otlp_tracer_provider",
    }


class TestDocumentedSignatures:
    @pytest.mark.parametrize(
        "make",
        [
            lambda: stepwatch.Parallel("p", [], "partial", False, 2, 1),  # type: ignore[misc]
            lambda: stepwatch.Loop("l", Request("a", "m"), 3),  # type: ignore[misc]
            lambda: stepwatch.Transform("t", lambda ctx: 1, 0.2),  # type: ignore[misc]
            lambda: Request("r", "m", None, 1.0),  # type: ignore[misc]
        ],
        ids=["parallel", "loop", "transform", "request-timeout"],
    )
    def test_options_are_keyword_only(self, make: Any) -> None:
        """Options after the documented positional arguments must be named."""
        with pytest.raises(TypeError, match="positional argument"):
            make()

    def test_timeout_options_keywords_are_the_built_in_step_types(self) -> None:
        """TimeoutOptions takes one keyword per built-in step type, from the one list of
        them (executors.BUILTIN_STEPS; the run's root type 'flow' is set by Flow(timeout))."""
        from stepwatch.executors import BUILTIN_STEPS

        keywords = {
            p.name
            for p in inspect.signature(stepwatch.TimeoutOptions).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name != "types"
        }
        assert keywords == {step.type for step, _ in BUILTIN_STEPS} - {"flow"}

    def test_timeouts_can_be_reassigned(self) -> None:
        """Assigning FlowExecutor.timeouts applies to the next plan (no stale cache)."""
        ex = FlowExecutor(handlers={"m": lambda p: p})
        flow = stepwatch.Flow("f", Request("r", "m"))
        ex.validate(flow)
        assert ex._plan(flow).entries[id(flow.steps[0])][1] == 30.0
        ex.timeouts = stepwatch.TimeoutOptions(request=0.5)
        assert ex._plan(flow).entries[id(flow.steps[0])][1] == 0.5


def test_all_is_sorted_and_unique() -> None:
    """__all__ has no duplicates (and stays sorted for readable diffs)."""
    assert len(stepwatch.__all__) == len(set(stepwatch.__all__))
    assert list(stepwatch.__all__) == sorted(stepwatch.__all__, key=lambda n: (n.upper() != n, n))


def test_issue_contract_names_are_exported() -> None:
    """The names other components rely on are importable from stepwatch."""
    contract = (
        "Flow FlowExecutor Request Transform Branch Loop Sequence Parallel TimeoutOptions "
        "StepTimeoutError FlowTimeoutError ValidationError ErrorCode"
    )
    for name in contract.split():
        assert name in stepwatch.__all__
        assert getattr(stepwatch, name) is not None


def test_version_comes_from_metadata() -> None:
    """__version__ is the installed distribution's version."""
    from importlib.metadata import version

    assert stepwatch.__version__ == version("stepwatch")


@pytest.mark.anyio
class TestRunArguments:
    async def test_a_list_of_steps_is_a_validation_error(self, anyio_backend: object) -> None:
        """run([Request(...)]) names the mistake instead of a TypeError about weak references."""
        with pytest.raises(ValidationError) as info:
            await FlowExecutor().run([Request("a", "m")])  # type: ignore[arg-type]
        assert info.value.field == "FlowExecutor.run.flow"
        assert "Flow(name, steps)" in str(info.value)


def test_result_of_a_hand_made_run_error_says_why_it_is_missing() -> None:
    """A run error's result is non-optional; one that never left run() says so clearly."""
    error = StepFailedError("x", step_name="a", step_type="request")
    with pytest.raises(AttributeError, match=r"set when the error leaves FlowExecutor.run\(\)"):
        error.result  # noqa: B018
    assert ValidationError("bad").result is None
