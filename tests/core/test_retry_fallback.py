"""Retries with backoff bounded by the enclosing deadline, and per-step fallbacks."""

from __future__ import annotations

import traceback
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from stepwatch import (
    CancelCause,
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Retry,
    Status,
    StepFailedError,
    StepTimeoutError,
    ValidationError,
    retry_after,
)

from .helpers import Flaky

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


class Throttled(Exception):
    """Asks for a wait too large for a float (a hostile header parsed by a client)."""

    retryable = True
    retry_after = 10**400


class BrokenRetryAfter(Exception):
    """Its retry_after is a property that raises."""

    retryable = True

    @property
    def retry_after(self) -> float:
        raise RuntimeError("the property broke")


class HostileHeader(str):
    """A Retry-After header value that raises when parsed."""

    def strip(self, chars: str | None = None, /) -> str:
        raise RuntimeError("the header broke")


class HTTPStatusError(Exception):
    """An overloaded server's answer, named as httpx's (stepwatch knows it by name), with
    a Retry-After header that raises when parsed."""

    __module__ = "httpx"

    def __init__(self) -> None:
        super().__init__("503 Service Unavailable")
        self.response = SimpleNamespace(
            status_code=503, headers={"Retry-After": HostileHeader("1")}
        )


class TestRetry:
    async def test_retries_retryable_errors_until_success(self) -> None:
        """A ConnectionError is retried with backoff and the step succeeds on attempt 3."""
        flaky = Flaky.times(2)
        flow = Flow("f", Request("r", "h", retry=Retry(attempts=3, initial=0.1, jitter=False)))
        result = await FlowExecutor(handlers={"h": flaky}).run(flow)
        assert result["r"] == "ok"
        assert result.outcomes["r"].attempts == 3
        gaps = [b - a for a, b in zip(flaky.calls, flaky.calls[1:], strict=False)]
        assert gaps == pytest.approx([0.1, 0.2], abs=0.05)

    async def test_non_retryable_errors_are_not_retried(self) -> None:
        """A ValueError is not retryable by default: one attempt, then StepFailedError."""
        flaky = Flaky.times(5, ValueError("bad input"))
        flow = Flow("f", Request("r", "h", retry=5))
        with pytest.raises(StepFailedError) as info:
            await FlowExecutor(handlers={"h": flaky}).run(flow)
        assert len(flaky.calls) == 1
        assert info.value.attempts == 1 and info.value.retryable is False

    async def test_each_attempt_gets_the_step_timeout(self) -> None:
        """An attempt that exceeds the step timeout is retried; the next one succeeds."""
        flaky = Flaky.times(1, hang=True)
        flow = Flow("f", Request("r", "h", timeout=0.1, retry=Retry(attempts=2, initial=0.01)))
        result = await FlowExecutor(handlers={"h": flaky}).run(flow)
        assert result["r"] == "ok"
        assert result.outcomes["r"].attempts == 2
        assert flaky.calls[1] - flaky.calls[0] == pytest.approx(0.1 + 0.01, abs=0.06)

    async def test_retries_stop_at_the_enclosing_deadline(self) -> None:
        """Retries never sleep past the group deadline; the group reports the timeout."""
        flaky = Flaky.times(100)
        step = Request(
            "r", "h", retry=Retry(attempts=100, initial=0.04, multiplier=1, jitter=False)
        )
        flow = Flow("f", Parallel("g", [step], timeout=0.1))
        start = anyio.current_time()
        with pytest.raises((StepFailedError, StepTimeoutError)) as info:
            await FlowExecutor(handlers={"h": flaky}).run(flow)
        took = anyio.current_time() - start
        assert took < 0.15
        assert 2 <= len(flaky.calls) <= 3
        assert all(t - start < 0.1 for t in flaky.calls)
        assert info.value.result is not None
        assert info.value.result.outcomes["r"].status is Status.FAILED

    async def test_no_retry_after_deadline_message(self) -> None:
        """A timed-out attempt whose retry would start past the deadline says so."""
        flaky = Flaky.times(100, hang=True)
        step = Request("r", "h", timeout=0.05, retry=Retry(attempts=5, initial=0.2, jitter=False))
        flow = Flow("f", Parallel("g", [step], timeout=0.2))
        with pytest.raises(StepTimeoutError, match="no retry: the next attempt would start"):
            await FlowExecutor(handlers={"h": flaky}).run(flow)
        assert len(flaky.calls) == 1

    @pytest.mark.parametrize("hang", [False, True], ids=["failed", "timed_out"])
    async def test_cancelled_during_the_backoff(self, hang: bool) -> None:
        """A step cancelled while it waits between attempts (here by a met quorum) gets its
        parent's cause and ends when the cancel came, whatever its last attempt did."""
        flaky = Flaky.times(100, hang=hang)
        group = Parallel(
            "g",
            [
                Request("r", "h", timeout=0.02, retry=Retry(attempts=3, initial=0.5)),
                Request("ok", "fast"),
            ],
            min_successes=1,
        )

        async def fast(params: Any) -> str:
            await anyio.sleep(0.1)
            return "fast"

        result = await FlowExecutor(handlers={"h": flaky, "fast": fast}).run(Flow("f", group))
        outcome = result.outcomes["r"]
        assert outcome.status is Status.CANCELLED
        assert outcome.cause is CancelCause.QUORUM_MET
        assert outcome.attempts == 1 and len(flaky.calls) == 1
        assert 0.095 <= outcome.elapsed < 0.25  # ended when the quorum was met

    @pytest.mark.parametrize(
        ("verdict", "fallback"),
        [(False, False), (True, False), (False, True), (True, True)],
        ids=["not-retried", "retried", "not-retried-fallback", "retried-fallback"],
    )
    async def test_the_retry_predicate_runs_once_per_failed_attempt(
        self, verdict: bool, fallback: bool
    ) -> None:
        """The retry_on predicate is asked once about each failed attempt's error, also for
        the last one (whose answer becomes the error's retryable)."""
        asked: list[BaseException] = []

        def retry_on(exc: BaseException) -> bool:
            asked.append(exc)
            return verdict

        flaky = Flaky.times(100, ConnectionError("reset"))
        policy = Retry(attempts=3, initial=0.01, retry_on=retry_on)
        options: dict[str, Any] = {"fallback": "x", "fallback_on": ("failure",)} if fallback else {}
        flow = Flow("f", Request("r", "h", retry=policy, **options))
        ex = FlowExecutor(handlers={"h": flaky})
        if fallback:
            result = await ex.run(flow)
            error = result.outcomes["r"].error
        else:
            with pytest.raises(StepFailedError) as info:
                await ex.run(flow)
            error = info.value
        assert isinstance(error, StepFailedError) and error.retryable is verdict
        assert len(flaky.calls) == (3 if verdict else 1)
        assert len(asked) == len(flaky.calls), asked

    async def test_a_retry_predicate_that_raises_means_not_retryable(self) -> None:
        """A retry_on predicate that raises is a no: the step fails once with its own error
        (not the predicate's), recorded as not retryable."""
        asked: list[BaseException] = []

        def broken(exc: BaseException) -> bool:
            asked.append(exc)
            raise RuntimeError("the predicate broke")

        flaky = Flaky.times(100, ConnectionError("reset"))
        flow = Flow("f", Request("r", "h", retry=Retry(attempts=3, retry_on=broken)))
        with pytest.raises(StepFailedError) as info:
            await FlowExecutor(handlers={"h": flaky}).run(flow)
        assert info.value.step_name == "r"
        assert isinstance(info.value.__cause__, ConnectionError)
        assert not info.value.retryable
        assert len(flaky.calls) == len(asked) == 1
        assert info.value.result is not None
        assert info.value.result.outcomes["r"].status is Status.FAILED

    @pytest.mark.parametrize(
        "error",
        [Throttled(), BrokenRetryAfter(), HTTPStatusError()],
        ids=["too-large-for-a-float", "property-raises", "header-raises"],
    )
    async def test_a_garbage_retry_after_is_ignored(self, error: Exception) -> None:
        """A Retry-After that cannot be read or converted is ignored: the step is retried
        after its own backoff, its error never replaced by the Retry-After's."""
        flaky = Flaky.times(1, error)
        step = Request("r", "h", retry=Retry(attempts=2, initial=0.01, jitter=False))
        result = await FlowExecutor(handlers={"h": flaky}).run(Flow("f", step))
        assert result["r"] == "ok" and result.outcomes["r"].attempts == 2
        assert flaky.gaps() == pytest.approx([0.01], abs=0.05)
        if not isinstance(error, HTTPStatusError):  # its parse error is caught by the guard
            assert retry_after(error) is None

    def test_retry_validation(self) -> None:
        """Bad retry settings name the field and value."""
        with pytest.raises(ValidationError, match=r"Retry.attempts must be >= 1; got 0"):
            Retry(attempts=0)
        with pytest.raises(ValidationError, match=r"Retry.initial .*-1"):
            Retry(initial=-1)
        with pytest.raises(ValidationError, match=r"Request\('r'\).retry must be"):
            Request("r", "h", retry="twice")

    def test_backoff_grows_and_is_capped(self) -> None:
        """Backoff doubles per attempt, is capped by max_delay, and jitter stays in [d/2, d]."""
        policy = Retry(initial=0.1, multiplier=2, max_delay=0.3, jitter=False)
        assert [policy.delay(n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
        jittered = Retry(initial=0.1, jitter=True)
        assert all(0.05 <= jittered.delay(1) <= 0.1 for _ in range(100))


class TestFallback:
    async def test_fallback_used_when_the_step_times_out(self) -> None:
        """A step that times out with a fallback yields it; outcome status is fallback."""
        flaky = Flaky.times(100, hang=True)
        flow = Flow("f", [Request("r", "h", timeout=0.05, fallback={"stock": "unknown"})])
        result = await FlowExecutor(handlers={"h": flaky}).run(flow)
        assert result["r"] == {"stock": "unknown"}
        outcome = result.outcomes["r"]
        assert outcome.status is Status.FALLBACK and outcome.recovered and outcome.ok
        assert isinstance(outcome.error, StepTimeoutError)

    async def test_none_is_a_valid_fallback(self) -> None:
        """fallback=None is honoured (the sentinel for 'no fallback' is NO_FALLBACK)."""
        flow = Flow("f", Request("r", "h", timeout=0.05, fallback=None))
        result = await FlowExecutor(handlers={"h": Flaky.times(1, hang=True)}).run(flow)
        assert result["r"] is None and result.outcomes["r"].status is Status.FALLBACK

    async def test_fallback_not_used_for_failures(self) -> None:
        """A failure is not a timeout: the fallback is not used, the error propagates."""
        flow = Flow("f", Request("r", "h", fallback="x"))
        with pytest.raises(StepFailedError):
            await FlowExecutor(handlers={"h": Flaky.times(1, ValueError("no"))}).run(flow)

    async def test_a_raised_timeout_keeps_its_real_traceback(self) -> None:
        """A timeout raised for want of a fallback has the traceback of where it was raised,
        without a made-up stack (meant for hidden timeouts) repeating the frames under it."""
        flow = Flow("f", Request("r", "h", timeout=0.05))
        with pytest.raises(StepTimeoutError) as info:
            await FlowExecutor(handlers={"h": Flaky.times(1, hang=True)}).run(flow)
        names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert names[0] == "test_a_raised_timeout_keeps_its_real_traceback", names
        assert names.count(names[0]) == 1, names  # no frame under this test repeated
        assert "<module>" not in names, names
        assert names[-1] == "_give_up", names  # it ends where the guard raised it

    async def test_a_failure_fallback_keeps_a_bounded_message(self) -> None:
        """The error a failure fallback replaced names a huge step and a huge error text
        clipped, as a raised failure does: the message stays small, the cause is whole."""
        name = "n" * 100_000
        text = "x" * 1_000_000
        flow = Flow("f", Request(name, "h", fallback="cached", fallback_on=("failure",)))
        result = await FlowExecutor(handlers={"h": Flaky.times(1, ValueError(text))}).run(flow)
        outcome = result.outcomes[name]
        assert outcome.status is Status.FALLBACK and result[name] == "cached"
        error = outcome.error
        assert isinstance(error, StepFailedError) and error.step_name == name
        assert len(str(error)) < 2_000, len(str(error))
        assert str(error).endswith("; its fallback was used")
        assert isinstance(error.__cause__, ValueError) and str(error.__cause__) == text


class TestRetriedComposite:
    async def test_retried_parallel_starts_clean(self) -> None:
        """A retried parallel step's next attempt does not inherit the last one's cancel cause."""
        calls = {"n": 0}

        async def flaky_then_slow(params: object) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("first attempt fails fast")
            await anyio.sleep(10)

        async def slow(params: object) -> None:
            await anyio.sleep(10)

        ex = FlowExecutor(handlers={"flaky": flaky_then_slow, "slow": slow})
        group = Parallel(
            "g",
            [Request("a", "flaky"), Request("b", "slow")],
            timeout=0.1,
            retry=Retry(attempts=2, initial=0.01, retry_on=lambda e: True),
        )
        with pytest.raises(StepTimeoutError) as info:
            await ex.run(Flow("f", Parallel("outer", [group], timeout=5)))
        assert info.value.step_name == "g"
        outcomes = info.value.outcomes
        assert outcomes["b"].cause is CancelCause.DEADLINE
        assert outcomes["a"].cause is CancelCause.DEADLINE
