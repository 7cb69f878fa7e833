"""The default retry predicate (the clients people use) and Retry-After within the deadline."""

from __future__ import annotations

import email.message
import email.utils
import math
import re
import ssl
import time
import urllib.error
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest

from stepwatch import (
    RETRYABLE_STATUSES,
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Retry,
    Status,
    StepFailedError,
    StepTimeoutError,
    ValidationError,
    WorkersExhaustedError,
    is_retryable,
    retry_after,
)
from stepwatch._retry import parse_retry_after
from stepwatch.http import BudgetExhaustedError, JsonRpcProtocolError, JsonRpcTransportError
from tests.core.helpers import Flaky

pytestmark = pytest.mark.anyio


# -- stand-ins and builders ----------------------------------------------------------------


def _aiohttp() -> SimpleNamespace:
    """Classes shaped like aiohttp's client exceptions (aiohttp is not a dependency), with
    its module name and hierarchy."""

    class ClientError(Exception):
        pass

    class ClientResponseError(ClientError):
        def __init__(self, status: int, headers: Any = None) -> None:
            super().__init__(f"{status}, message='...'")
            self.status = status
            self.headers = headers

    class ClientConnectionError(ClientError):
        pass

    class ClientOSError(ClientConnectionError, OSError):
        pass

    class ClientConnectorError(ClientOSError):
        pass

    class ClientSSLError(ClientConnectorError):
        pass

    class ClientConnectorCertificateError(ClientSSLError):
        pass

    class ServerConnectionError(ClientConnectionError):
        pass

    class ServerDisconnectedError(ServerConnectionError):
        pass

    class ServerTimeoutError(ServerConnectionError, TimeoutError):
        pass

    class ConnectionTimeoutError(ServerTimeoutError):
        pass

    class ServerFingerprintMismatch(ServerConnectionError):
        pass

    class ClientPayloadError(ClientError):
        pass

    class InvalidURL(ClientError, ValueError):
        pass

    classes = {k: v for k, v in locals().items() if isinstance(v, type)}
    for cls in classes.values():
        cls.__module__ = "aiohttp.client_exceptions"
    return SimpleNamespace(**classes)


aiohttp = _aiohttp()


def status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    """What httpx's ``response.raise_for_status()`` raises."""
    request = httpx.Request("GET", "http://127.0.0.1/x")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"{status}", request=request, response=response)


def urllib_error(status: int, retry_after_value: str | None = None) -> urllib.error.HTTPError:
    headers = email.message.Message()
    if retry_after_value is not None:
        headers["Retry-After"] = retry_after_value
    return urllib.error.HTTPError("http://127.0.0.1/x", status, "msg", headers, None)


def certificate_failure() -> httpx.ConnectError:
    """httpx's ConnectError raised from a certificate verification failure."""
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]") from exc
    except httpx.ConnectError as exc:
        return exc


class Retryable(Exception):
    retryable = True


class Marked(ValueError):
    retryable = True


# -- the predicate -------------------------------------------------------------------------


class TestDefaultPredicate:
    @pytest.mark.parametrize(
        "exc",
        [
            httpx.ConnectError("refused"),
            httpx.ReadError("reset"),
            httpx.WriteError("broken pipe"),
            httpx.RemoteProtocolError("server disconnected without sending a response"),
            httpx.ConnectTimeout("connect"),
            httpx.ReadTimeout("read"),
            httpx.WriteTimeout("write"),
            httpx.PoolTimeout("pool"),
            BudgetExhaustedError(
                "no time left", request=httpx.Request("GET", "http://x"), time_left=0, margin=0.01
            ),
            aiohttp.ClientConnectionError("x"),
            aiohttp.ClientConnectorError("cannot connect"),
            aiohttp.ServerDisconnectedError("disconnected"),
            aiohttp.ServerTimeoutError("timeout"),
            aiohttp.ConnectionTimeoutError("timeout"),
            aiohttp.ClientPayloadError("payload cut"),
            ConnectionResetError("reset"),
            TimeoutError("timed out"),
            OSError("network unreachable"),
            urllib.error.URLError("refused"),
            Retryable("says so"),
            Marked("a ValueError that says it is retryable"),
            WorkersExhaustedError("no thread", step_name="s", step_type="request", max_threads=1),
            JsonRpcTransportError("503"),
            ExceptionGroup("all transient", [httpx.ReadError("a"), TimeoutError("b")]),
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_transient_errors_are_retried(self, exc: BaseException) -> None:
        """Transport errors and timeouts of httpx, aiohttp and the stdlib are retried."""
        assert is_retryable(exc) is True

    @pytest.mark.parametrize(
        "exc",
        [
            TypeError("bad call"),
            ValueError("bad value"),
            KeyError("missing"),
            AttributeError("no such attribute"),
            IndexError("out of range"),
            ZeroDivisionError("division"),
            NotImplementedError("todo"),
            AssertionError("invariant"),
            RuntimeError("unknown"),
            Exception("unknown"),
            httpx.UnsupportedProtocol("ftp://"),
            httpx.LocalProtocolError("bad header"),
            httpx.ProxyError("407"),
            httpx.DecodingError("gzip"),
            httpx.TooManyRedirects("loop"),
            httpx.InvalidURL("bad url"),
            certificate_failure(),
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
            aiohttp.ClientConnectorCertificateError("certificate"),
            aiohttp.ServerFingerprintMismatch("pinned"),
            aiohttp.InvalidURL("bad url"),
            FileNotFoundError("config.toml"),
            PermissionError("denied"),
            JsonRpcProtocolError("not JSON"),
            ExceptionGroup("mixed", [httpx.ReadError("a"), TypeError("b")]),
        ],
        ids=lambda e: f"{type(e).__module__}.{type(e).__name__}",
    )
    def test_programming_and_permanent_errors_are_not(self, exc: BaseException) -> None:
        """Programming errors, bad URLs, rejected certificates and local files never retry."""
        assert is_retryable(exc) is False

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 408, 409, 422, 500, 501])
    def test_status_errors_other_than_overload_are_not(self, status: int) -> None:
        """Every 4xx but 429, and 500/501, are not retried, whichever client raised them."""
        clients = (status_error, aiohttp.ClientResponseError, urllib_error)
        for exc in (client(status) for client in clients):
            assert is_retryable(exc) is False, exc

    @pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
    def test_overload_statuses_are_retried(self, status: int) -> None:
        """429, 502, 503 and 504 are retried, whichever client raised them."""
        assert {429, 502, 503, 504} == RETRYABLE_STATUSES
        clients = (status_error, aiohttp.ClientResponseError, urllib_error)
        for exc in (client(status) for client in clients):
            assert is_retryable(exc) is True, exc

    def test_requests_errors(self) -> None:
        """requests (for sync handlers): connection errors and timeouts retry; a 4xx from
        raise_for_status() and a bad URL do not, although requests' errors are OSErrors."""
        requests = pytest.importorskip("requests")

        def http_error(status: int) -> Exception:
            response = requests.Response()
            response.status_code = status
            return requests.HTTPError(f"{status}", response=response)

        assert is_retryable(requests.ConnectionError("refused"))
        assert is_retryable(requests.ReadTimeout("read"))
        assert is_retryable(http_error(503))
        assert not is_retryable(http_error(404))
        assert not is_retryable(requests.HTTPError("no response"))
        assert not is_retryable(requests.exceptions.InvalidURL("bad url"))
        assert not is_retryable(requests.exceptions.MissingSchema("no scheme"))

    def test_subclasses_are_recognised(self) -> None:
        """A user's subclass of a client's transient error is transient too."""

        class MyTimeout(httpx.ReadTimeout):
            pass

        class MyStatus(httpx.HTTPStatusError):
            pass

        assert is_retryable(MyTimeout("slow"))
        base = status_error(404)
        assert not is_retryable(MyStatus("x", request=base.request, response=base.response))

    def test_odd_status_errors_are_not_retried(self) -> None:
        """A status error without a usable status (a str, a bool) is not retried."""
        assert is_retryable(aiohttp.ClientResponseError("503")) is False
        assert is_retryable(aiohttp.ClientResponseError(True)) is False

    def test_retryable_attribute_wins(self) -> None:
        """An explicit retryable=False beats the class (a 503 the application knows better)."""
        exc = status_error(503)
        exc.retryable = False
        assert is_retryable(exc) is False

    def test_empty_exception_group_is_not_retried(self) -> None:
        """An exception group is retried only when every member is."""
        assert is_retryable(ExceptionGroup("one", [httpx.ConnectError("x")])) is True
        group = ExceptionGroup("nested", [ExceptionGroup("inner", [ValueError("x")])])
        assert is_retryable(group) is False


# -- Retry-After -----------------------------------------------------------------------------


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("0", 0.0),
            ("5", 5.0),
            (" 120 ", 120.0),
            ("1.5", 1.5),
            (b"7", 7.0),
            ("", None),
            ("soon", None),
            ("-3", None),
            ("+3", None),
            ("1e3", None),
            ("nan", None),
            ("inf", None),
            ("٣", None),  # a non-ASCII digit
            ("1" * 65, None),  # longer than any real header
            (None, None),
            (5, None),
        ],
    )
    def test_seconds_and_garbage(self, value: object, expected: float | None) -> None:
        """Seconds are read; anything unusable is ignored (None), never an error."""
        assert parse_retry_after(value) == expected

    def test_absurdly_many_digits(self) -> None:
        """64 digits parse to an enormous wait (which no deadline allows), not an error."""
        seconds = parse_retry_after("9" * 64)
        assert seconds is not None and seconds > 1e60

    def test_http_date(self) -> None:
        """An HTTP-date is the time until then; a date in the past is 0."""
        now = 1_700_000_000.0
        later = email.utils.formatdate(now + 90, usegmt=True)
        assert parse_retry_after(later, now=now) == pytest.approx(90, abs=1)
        earlier = email.utils.formatdate(now - 90, usegmt=True)
        assert parse_retry_after(earlier, now=now) == 0.0
        assert parse_retry_after("Wed, 99 Foo 2015 07:28:00 GMT", now=now) is None
        real = parse_retry_after(email.utils.formatdate(time.time() + 3600, usegmt=True))
        assert real is not None and 3590 < real <= 3600

    def test_read_from_each_client(self) -> None:
        """Retry-After is read from httpx, aiohttp, urllib errors and a retry_after attribute."""
        assert retry_after(status_error(503, {"Retry-After": "3"})) == 3.0
        assert retry_after(aiohttp.ClientResponseError(429, {"Retry-After": "4"})) == 4.0
        assert retry_after(urllib_error(503, "5")) == 5.0
        assert retry_after(status_error(503)) is None
        assert retry_after(httpx.ConnectError("x")) is None

        class Throttled(Exception):
            retry_after = 0.25

        assert retry_after(Throttled()) == 0.25
        wrapped = StepFailedError("x", step_name="s", step_type="request", errors=[Throttled()])
        assert retry_after(wrapped) == 0.25

    def test_bad_attribute_is_ignored(self) -> None:
        """A negative, NaN or non-numeric retry_after attribute is ignored."""
        for value in (-1, math.nan, "3", True):
            exc = Exception()
            exc.retry_after = value
            assert retry_after(exc) is None


# -- through a flow ------------------------------------------------------------------------------


def run(backend: Flaky, step: Any, *, timeout: float | None = None) -> Any:
    flow = Flow("f", [step], timeout=timeout)
    return FlowExecutor(handlers={"h": backend}, metrics=False, tracing=False).run(flow)


FAST = Retry(attempts=3, initial=0.01, jitter=False)


@pytest.mark.virtual_time
class TestRetriesInAFlow:
    async def test_httpx_transport_errors_are_retried_by_default(self) -> None:
        """retry=3 around an httpx call retries ConnectError and ReadTimeout, then succeeds."""
        backend = Flaky(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"))
        result = await run(backend, Request("r", "h", retry=3))
        assert result["r"] == "ok"
        assert result.outcomes["r"].attempts == 3

    async def test_aiohttp_connection_errors_are_retried_by_default(self) -> None:
        """aiohttp's disconnects and payload errors are retried too."""
        backend = Flaky(aiohttp.ServerDisconnectedError("bye"), aiohttp.ClientPayloadError("cut"))
        result = await run(backend, Request("r", "h", retry=FAST))
        assert result.outcomes["r"].attempts == 3

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 500])
    async def test_status_errors_are_not_retried(self, status: int) -> None:
        """A 4xx (or a 500) from raise_for_status() fails at once, whatever retry says."""
        backend = Flaky(*[status_error(status)] * 5)
        with pytest.raises(StepFailedError) as info:
            await run(backend, Request("r", "h", retry=5))
        assert len(backend.calls) == 1
        assert info.value.retryable is False
        assert isinstance(info.value.__cause__, httpx.HTTPStatusError)

    async def test_programming_errors_are_not_retried(self) -> None:
        """A TypeError in the handler is a bug: one attempt."""
        backend = Flaky(*[TypeError("unsupported operand")] * 5)
        with pytest.raises(StepFailedError):
            await run(backend, Request("r", "h", retry=5))
        assert len(backend.calls) == 1

    async def test_retry_after_sets_the_least_backoff(self) -> None:
        """A 503 with Retry-After: 0.3 waits that long before the retry, not the 10 ms
        backoff."""
        backend = Flaky(status_error(503, {"Retry-After": "0.3"}))
        result = await run(backend, Request("r", "h", retry=FAST), timeout=5)
        assert result["r"] == "ok"
        (gap,) = backend.gaps()
        assert 0.295 <= gap < 0.55  # real time on asyncio: late, never early

    async def test_http_date_retry_after_is_honoured(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An HTTP-date Retry-After delays the retry until then (the wall clock is fixed
        0.3 s before the date)."""
        now = 1_700_000_000.7
        monkeypatch.setattr("stepwatch._retry.time", SimpleNamespace(time=lambda: now))
        when = email.utils.formatdate(now + 0.3, usegmt=True)  # ...:01 GMT
        backend = Flaky(status_error(429, {"Retry-After": when}))
        result = await run(backend, Request("r", "h", retry=FAST), timeout=5)
        assert result["r"] == "ok"
        (gap,) = backend.gaps()
        assert 0.295 <= gap < 0.55  # real time on asyncio: late, never early

    async def test_retry_after_past_the_deadline_is_not_waited_for(self) -> None:
        """Retry-After longer than the time left: no retry, the 503 is raised at once and
        says why."""
        backend = Flaky(*[status_error(503, {"Retry-After": "2"})] * 3)
        start = anyio.current_time()
        with pytest.raises(StepFailedError) as info:
            await run(backend, Request("r", "h", retry=FAST), timeout=0.5)
        # did not sleep until the 0.5 s deadline (real time on asyncio: a generous margin)
        assert anyio.current_time() - start < 0.25
        assert len(backend.calls) == 1
        cause = info.value.__cause__
        assert isinstance(cause, httpx.HTTPStatusError)
        (note,) = cause.__notes__
        assert note.startswith("no retry: the next attempt would start after the deadline")
        assert re.search(r"asked to wait 2 s with Retry-After; 0\.(5|4\d*) s were left", note)

    async def test_retry_after_past_a_group_deadline(self) -> None:
        """Inside a parallel group the group's deadline bounds the wait the same way."""
        backend = Flaky(*[status_error(429, {"Retry-After": "1"})] * 3)
        group = Parallel("g", [Request("r", "h", retry=FAST)], timeout=0.3)
        with pytest.raises(StepFailedError):
            await run(backend, group)
        assert len(backend.calls) == 1

    async def test_huge_retry_after_is_not_waited_for(self) -> None:
        """An enormous Retry-After without any deadline is still not slept: it exceeds
        max_delay."""
        backend = Flaky(*[status_error(503, {"Retry-After": "9" * 40})] * 3)
        start = anyio.current_time()
        with pytest.raises(StepFailedError) as info:
            await run(backend, Request("r", "h", timeout=math.inf, retry=FAST))
        # did not sleep Retry.max_delay (5 s) either (real time on asyncio: a wide margin)
        assert anyio.current_time() - start < 1.0
        assert len(backend.calls) == 1
        assert "more than Retry.max_delay" in info.value.__cause__.__notes__[0]

    async def test_garbage_retry_after_falls_back_to_the_backoff(self) -> None:
        """An unusable Retry-After is ignored: the policy's own backoff applies."""
        backend = Flaky(status_error(503, {"Retry-After": "tomorrow-ish"}))
        result = await run(backend, Request("r", "h", retry=FAST), timeout=5)
        assert result["r"] == "ok"
        (gap,) = backend.gaps()
        assert gap < 0.25  # the 10 ms backoff, not the header

    async def test_respect_retry_after_false(self) -> None:
        """respect_retry_after=False keeps the policy's backoff."""
        policy = Retry(attempts=2, initial=0.01, jitter=False, respect_retry_after=False)
        backend = Flaky(status_error(503, {"Retry-After": "3"}))
        result = await run(backend, Request("r", "h", retry=policy), timeout=1)
        assert result["r"] == "ok"
        (gap,) = backend.gaps()
        assert gap < 0.25  # the 10 ms backoff, not the header

    async def test_no_retry_note_is_not_repeated(self) -> None:
        """An error instance raised again by a second run is not given a second note."""
        error = status_error(503, {"Retry-After": "2"})
        for _ in range(2):
            with pytest.raises(StepFailedError):
                await run(Flaky(error), Request("r", "h", retry=FAST), timeout=0.5)
        assert len(error.__notes__) == 1

    async def test_timeout_error_message_names_the_retry_after(self) -> None:
        """A retried stepwatch error's own message carries the reason."""

        class Throttled(StepTimeoutError):
            retry_after = 1.0

        def throttled() -> StepTimeoutError:
            return Throttled("slow", step_name="r", step_type="request", timeout=1, elapsed=1)

        backend = Flaky(throttled, throttled)
        with pytest.raises(StepTimeoutError, match=r"no retry: .* asked to wait 1 s"):
            await run(backend, Request("r", "h", retry=FAST), timeout=0.5)

    async def test_custom_predicate_extends_the_default(self) -> None:
        """retry_on=... composes with is_retryable (here: also retry a 500)."""

        def also_500(exc: BaseException) -> bool:
            if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 500:
                return True
            return is_retryable(exc)

        backend = Flaky(status_error(500), httpx.ReadError("reset"))
        policy = Retry(attempts=3, initial=0.01, retry_on=also_500)
        result = await run(backend, Request("r", "h", retry=policy))
        outcome = result.outcomes["r"]
        assert outcome.attempts == 3 and outcome.status is Status.SUCCEEDED


class TestRetryDefinition:
    def test_respect_retry_after_validated(self) -> None:
        """respect_retry_after must be a bool; the error names the field and the value."""
        with pytest.raises(ValidationError, match=r"Retry.respect_retry_after .* got 'yes'") as e:
            Retry(respect_retry_after="yes")
        assert e.value.field == "Retry.respect_retry_after" and e.value.value == "yes"

    def test_retry_is_a_value_object(self) -> None:
        """Retry stays frozen and compares by value; its default predicate is is_retryable."""
        assert Retry() == Retry()
        assert Retry().retry_on is is_retryable
        assert Retry(respect_retry_after=False) != Retry()
        with pytest.raises(AttributeError):
            Retry().attempts = 5


def test_readme_retry_on_example() -> None:
    """The README's retry_on example runs and extends the default as it says."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```python\n(import httpx\n.*?def also_500.*?)```", readme, re.S)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)
    also_500 = namespace["also_500"]
    assert also_500(status_error(500)) and also_500(status_error(503))
    assert not also_500(status_error(404)) and not also_500(TypeError("bug"))
