"""structlog events: names, levels and keys; cheap when filtered; never break a flow."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from structlog.testing import capture_logs

from stepwatch import (
    Flow,
    FlowExecutor,
    FlowTimeoutError,
    Parallel,
    Request,
    Sequence,
    StepFailedError,
    StepTimeoutError,
    _log,
)
from stepwatch.telemetry import add_trace_ids
from stepwatch.testing import sleeping as sleeper
from tests.helpers import memory_tracer

from .handlers import Boom, boom

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

BASE_KEYS = {"event", "log_level", "flow", "run_id", "step", "step_type", "timeout"}
END_KEYS = BASE_KEYS | {"elapsed", "outcome", "cause", "attempts"}


HANDLERS: dict[str, Callable[[Any], Any]] = {
    "fast": sleeper(0.01, "fast"),
    "near": sleeper(0.09, "near"),
    "slow": sleeper(10, "slow"),
    "boom": boom,
}


@pytest.fixture(autouse=True)
def default_structlog() -> Iterator[None]:
    """Run with structlog's defaults and restore whatever was configured before."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**saved)


def executor(**kwargs: Any) -> FlowExecutor:
    kwargs.setdefault("tracing", False)
    return FlowExecutor(handlers=HANDLERS, metrics=False, **kwargs)


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


def warnings(logs: list[MutableMapping[str, Any]]) -> list[str]:
    return [e["event"] for e in logs if e["log_level"] == "warning"]


class TestEvents:
    async def test_started_and_finished_at_debug(self) -> None:
        """Every step, the flow included, logs step.started and step.finished at debug."""
        flow = Flow("checkout", [Request("a", "fast"), Parallel("p", [Request("b", "fast")])])
        with capture_logs() as logs:
            result = await executor().run(flow)
        started = events(logs, "step.started")
        finished = events(logs, "step.finished")
        assert [e["step"] for e in started] == ["checkout", "a", "p", "b"]
        assert [e["step"] for e in finished] == ["a", "b", "p", "checkout"]
        assert warnings(logs) == []
        for e in started:
            assert set(e) == BASE_KEYS
            assert e["log_level"] == "debug"
            assert e["flow"] == "checkout"
            assert e["run_id"] == result.run_id
        for e in finished:
            assert set(e) == END_KEYS
            assert e["log_level"] == "debug"
            assert e["outcome"] == "success"
            assert e["cause"] is None
            assert e["attempts"] == 1
        a = finished[0]
        assert (a["step_type"], a["timeout"]) == ("request", 30.0)
        assert a["elapsed"] == pytest.approx(0.01, abs=0.05)
        assert finished[-1]["step_type"] == "flow"
        assert finished[-1]["timeout"] is None  # unbounded

    async def test_step_timeout(self) -> None:
        """The deadline owner logs step.timeout with pending; cut-off children don't warn."""
        flow = Flow("f", Parallel("p", [Request("a", "fast"), Request("b", "slow")], timeout=0.1))
        with capture_logs() as logs, pytest.raises(StepTimeoutError):
            await executor().run(flow)
        assert warnings(logs) == ["step.timeout"]
        (e,) = events(logs, "step.timeout")
        assert set(e) == END_KEYS | {"pending", "pending_count"}
        assert e["step"] == "p"
        assert e["step_type"] == "parallel"
        assert e["outcome"] == "timeout"
        assert e["timeout"] == 0.1
        assert e["elapsed"] == pytest.approx(0.1, abs=0.05)
        assert e["pending"] == ["b"]
        assert e["cause"] is None
        b = next(x for x in events(logs, "step.finished") if x["step"] == "b")
        assert (b["outcome"], b["cause"]) == ("cancellation", "deadline")

    async def test_flow_timeout(self) -> None:
        """The whole-flow deadline logs flow.timeout (not step.timeout)."""
        flow = Flow("f", [Request("a", "fast"), Request("b", "slow")], timeout=0.1)
        with capture_logs() as logs, pytest.raises(FlowTimeoutError):
            await executor().run(flow)
        assert warnings(logs) == ["flow.timeout"]
        (e,) = events(logs, "flow.timeout")
        assert set(e) == END_KEYS | {"pending", "pending_count"}
        assert (e["flow"], e["step"], e["step_type"]) == ("f", "f", "flow")
        assert e["timeout"] == 0.1
        assert e["pending"] == ["b"]

    async def test_step_failed_once_where_it_arose(self) -> None:
        """A handler error logs one step.failed, for the step that raised it."""
        flow = Flow(
            "f", Sequence("s", Parallel("p", [Request("bad", "boom"), Request("ok", "slow")]))
        )
        with capture_logs() as logs, pytest.raises(StepFailedError):
            await executor().run(flow)
        assert warnings(logs) == ["step.failed"]
        (e,) = events(logs, "step.failed")
        assert set(e) == END_KEYS | {"error", "error_type"}
        assert e["step"] == "bad"
        assert e["outcome"] == "failure"
        assert e["error"] == "backend exploded"
        assert e["error_type"] == f"{Boom.__module__}.Boom"
        ok = next(x for x in events(logs, "step.finished") if x["step"] == "ok")
        assert (ok["outcome"], ok["cause"]) == ("cancellation", "sibling_failure")

    async def test_near_timeout(self) -> None:
        """A step that used more than 80 % of its budget logs step.near_timeout."""
        flow = Flow("f", [Request("close", "near", timeout=0.1), Request("easy", "fast")])
        with capture_logs() as logs:
            await executor().run(flow)
        assert warnings(logs) == ["step.near_timeout"]
        (e,) = events(logs, "step.near_timeout")
        assert set(e) == END_KEYS | {"budget_ratio"}
        assert e["step"] == "close"
        assert e["outcome"] == "success"
        assert e["budget_ratio"] == pytest.approx(0.9, abs=0.05)

    async def test_logging_off(self) -> None:
        """logging=False: not one event."""
        with capture_logs() as logs, pytest.raises(StepTimeoutError):
            await executor(logging=False).run(
                Flow("f", Parallel("p", [Request("b", "slow")], timeout=0.1))
            )
        assert logs == []

    async def test_no_keys_leak_into_the_applications_context(self) -> None:
        """The library binds nothing into structlog's contextvars."""
        structlog.contextvars.clear_contextvars()
        with capture_logs():
            await executor().run(Flow("f", Request("a", "fast")))
        assert structlog.contextvars.get_contextvars() == {}


class RecordingLogger:
    """A bound logger that filters below ``level`` and records which methods were called."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.calls: list[str] = []

    def bind(self, **kw: Any) -> RecordingLogger:
        return self

    def is_enabled_for(self, level: int) -> bool:
        return level >= self.level

    def debug(self, event: str, **kw: Any) -> None:
        self.calls.append(f"debug {event}")

    def warning(self, event: str, **kw: Any) -> None:
        self.calls.append(f"warning {event}")


class ExplodingLogger:
    """A logger whose every method raises."""

    def __init__(self, where: str) -> None:
        self.where = where

    def bind(self, **kw: Any) -> Any:
        if self.where == "bind":
            raise RuntimeError("bind exploded")
        return self

    def is_enabled_for(self, level: int) -> bool:
        return True

    def debug(self, event: str, **kw: Any) -> None:
        raise RuntimeError("debug exploded")

    def warning(self, event: str, **kw: Any) -> None:
        raise RuntimeError("warning exploded")


class TestCostAndSafety:
    async def test_filtered_debug_is_not_called(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With debug filtered out, no debug call (nor its key building) is made."""
        fake = RecordingLogger(logging.INFO)
        structlog.configure()  # the application configured structlog: its route is used
        monkeypatch.setattr(_log, "_structlog", fake)
        with pytest.raises(StepTimeoutError):
            await executor().run(Flow("f", Parallel("p", [Request("b", "slow")], timeout=0.1)))
        assert fake.calls == ["warning step.timeout"]

    async def test_filtering_bound_logger_at_info(self) -> None:
        """Under structlog's filtering logger at INFO only the warnings come through."""
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        with capture_logs() as logs, pytest.raises(StepTimeoutError):
            await executor().run(Flow("f", Parallel("p", [Request("b", "slow")], timeout=0.1)))
        assert [e["event"] for e in logs] == ["step.timeout"]

    @pytest.mark.parametrize("where", ["bind", "methods"])
    async def test_exploding_logger_never_breaks_a_flow(
        self, monkeypatch: pytest.MonkeyPatch, where: str
    ) -> None:
        """A logger that raises changes neither results nor errors."""
        structlog.configure()
        monkeypatch.setattr(_log, "_structlog", ExplodingLogger(where))
        result = await executor().run(Flow("f", Request("a", "fast")))
        assert result["a"] == "fast"
        with pytest.raises(StepFailedError) as info:
            await executor().run(Flow("f", Request("bad", "boom")))
        assert isinstance(info.value.__cause__, Boom)

    async def test_raising_processor_never_breaks_a_flow(self) -> None:
        """An application processor that raises does not reach the flow."""

        def explode(logger: Any, name: str, event_dict: Any) -> Any:
            raise RuntimeError("processor exploded")

        with capture_logs(processors=[explode]) as logs:
            result = await executor().run(Flow("f", Request("a", "fast")))
        assert result["a"] == "fast"
        assert logs == []


class TestTraceIds:
    def test_adds_ids_of_the_current_span(self) -> None:
        """Inside a recording span the processor adds its hex trace and span ids."""
        provider = TracerProvider()
        with provider.get_tracer("t").start_as_current_span("s") as span:
            event = add_trace_ids(None, "info", {"event": "x"})
        ctx = span.get_span_context()
        assert event == {
            "event": "x",
            "trace_id": f"{ctx.trace_id:032x}",
            "span_id": f"{ctx.span_id:016x}",
        }

    def test_nothing_without_a_span(self) -> None:
        """Without a valid current span the event is unchanged."""
        assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}

    def test_keeps_explicit_ids(self) -> None:
        """Ids the caller set are not overwritten."""
        provider = TracerProvider()
        with provider.get_tracer("t").start_as_current_span("s"):
            event = add_trace_ids(None, "info", {"event": "x", "trace_id": "mine"})
        assert event["trace_id"] == "mine"
        assert len(event["span_id"]) == 16

    async def test_step_events_carry_their_steps_span(self) -> None:
        """With tracing on, each step's events carry the ids of that step's span."""
        provider, exporter = memory_tracer()
        ex = executor(tracing=True, tracer_provider=provider)
        with capture_logs(processors=[add_trace_ids]) as logs:
            await ex.run(Flow("f", Parallel("p", [Request("a", "fast"), Request("b", "fast")])))
        spans = {s.name: s.context for s in exporter.get_finished_spans()}
        for e in logs:
            span = spans[f"{e['step_type']} {e['step']}"]
            assert span is not None
            assert e["span_id"] == f"{span.span_id:016x}"
            assert e["trace_id"] == f"{span.trace_id:032x}"
        assert len(logs) == 8
        provider.shutdown()
