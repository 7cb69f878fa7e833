"""Logging that the application controls: structlog when it is configured, otherwise
ordinary logging records on the ``stepwatch`` logger; never stdout on its own; nothing
built for a step that logs nothing."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from stepwatch import Flow, FlowExecutor, Parallel, Request, StepTimeoutError
from stepwatch.testing import failing, sleeping

pytestmark = pytest.mark.anyio

HANDLERS = {"fast": sleeping(0.001, "ok"), "slow": sleeping(10), "boom": failing(ValueError("x"))}


def timed_out_flow() -> Flow:
    return Flow("f", Parallel("p", [Request("a", "fast"), Request("b", "slow")], timeout=0.05))


SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import anyio
    from stepwatch import Flow, FlowExecutor, Parallel, Request, StepwatchError
    from stepwatch.testing import failing, sleeping

    {setup}

    async def main():
        ex = FlowExecutor(
            handlers={{"slow": sleeping(10), "boom": failing(ValueError("x"))}}, metrics=False
        )
        for name in ("slow", "boom"):
            flow = Flow(name, Parallel("p", [Request("a", name)], timeout=0.05))
            try:
                await ex.run(flow)
            except StepwatchError:
                pass
        print("done")

    anyio.run(main)
    """
)


def run_script(setup: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(setup=setup)],
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestAnApplicationThatConfiguredNothing:
    def test_nothing_reaches_stdout_or_stderr(self) -> None:
        """Timeouts and failures in a process with no logging setup print nothing."""
        proc = run_script("")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "done\n"
        assert proc.stderr == ""

    def test_basic_config_at_error_silences_the_warnings(self) -> None:
        """logging.basicConfig(level=ERROR) keeps stepwatch's warnings out."""
        proc = run_script("logging.basicConfig(level=logging.ERROR)")
        assert proc.stdout == "done\n"
        assert proc.stderr == ""

    def test_the_stepwatch_logger_level_silences_them(self) -> None:
        """Raising the stepwatch logger's level silences it under a WARNING root config."""
        proc = run_script(
            "logging.basicConfig(level=logging.WARNING)\n"
            "logging.getLogger('stepwatch').setLevel(logging.CRITICAL)"
        )
        assert proc.stdout == "done\n"
        assert proc.stderr == ""

    def test_basic_config_at_warning_shows_them_on_stderr(self) -> None:
        """With logging configured at WARNING the events go where logging sends them."""
        proc = run_script("logging.basicConfig(level=logging.WARNING)")
        assert proc.stdout == "done\n"
        assert "WARNING:stepwatch:step.timeout" in proc.stderr
        assert "WARNING:stepwatch:step.failed" in proc.stderr


class TestRecordsOnTheStepwatchLogger:
    async def test_timeout_is_a_warning_record_with_the_keys_as_extra(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A timeout is a WARNING record on 'stepwatch' whose extra holds the event's keys."""
        caplog.set_level(logging.WARNING, logger="stepwatch")
        with pytest.raises(StepTimeoutError):
            await FlowExecutor(handlers=HANDLERS, metrics=False).run(timed_out_flow())
        records = [r for r in caplog.records if r.name == "stepwatch"]
        timeouts = [r for r in records if getattr(r, "event", None) == "step.timeout"]
        assert len(timeouts) == 1
        record: Any = timeouts[0]
        assert record.levelno == logging.WARNING
        assert (record.flow, record.step, record.step_type) == ("f", "p", "parallel")
        assert record.pending == ["b"]
        assert record.outcome == "timeout"
        assert record.getMessage().startswith("step.timeout ")

    async def test_debug_events_follow_the_logger_level(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """step.started/step.finished appear once the stepwatch logger is at DEBUG."""
        caplog.set_level(logging.DEBUG, logger="stepwatch")
        await FlowExecutor(handlers=HANDLERS, metrics=False).run(Flow("f", Request("a", "fast")))
        events = [getattr(r, "event", None) for r in caplog.records if r.name == "stepwatch"]
        assert events == ["step.started", "step.started", "step.finished", "step.finished"]

    async def test_a_configured_structlog_gets_the_events_instead(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Once the application configured structlog, events go through it, not logging."""
        caplog.set_level(logging.DEBUG, logger="stepwatch")
        with capture_logs() as logs, pytest.raises(StepTimeoutError):
            await FlowExecutor(handlers=HANDLERS, metrics=False).run(timed_out_flow())
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["step.timeout"]
        assert [r for r in caplog.records if r.name == "stepwatch"] == []


class TestNoCostWhenNothingIsLogged:
    async def test_a_quiet_step_builds_no_logger_and_no_fields(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """100 successful steps with warnings on and debug off make no logger and no
        record, with and without structlog configured."""
        made: list[str] = []
        import stepwatch._log as route

        real_bind = route._structlog.bind
        monkeypatch.setattr(route._structlog, "bind", lambda: made.append("bind") or real_bind())
        monkeypatch.setattr(route._stdlib, "log", lambda *a, **k: made.append("log"))
        flow = Flow("f", Parallel("p", [Request(f"c{i}", "fast") for i in range(100)]))
        ex = FlowExecutor(handlers=HANDLERS, metrics=False)
        await ex.run(flow)
        assert made == []
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        ex = FlowExecutor(handlers=HANDLERS, metrics=False)
        await ex.run(flow)
        assert made.count("bind") <= 1  # the debug level, looked at once a second


class TestFallbacks:
    async def test_a_failure_hidden_by_a_fallback_is_still_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """fallback_on=('failure',) keeps the flow going, and step.failed is still logged
        where the error arose."""
        caplog.set_level(logging.WARNING, logger="stepwatch")
        flow = Flow("f", Request("a", "boom", fallback=0, fallback_on=("failure",)))
        result = await FlowExecutor(handlers=HANDLERS, metrics=False).run(flow)
        assert result["a"] == 0
        failed = [r for r in caplog.records if getattr(r, "event", "") == "step.failed"]
        assert [getattr(r, "step", None) for r in failed] == ["a"]
