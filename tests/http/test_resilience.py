"""A small aggregator service over real HTTP backends on 127.0.0.1, called with httpx.

It shows, on asyncio (uvicorn) and trio (hypercorn), what issue 9 asked of retries and
degrading: a flaky backend is retried (HTTP 503s, and a server that drops connections),
``Retry-After`` is honoured within the deadline and not waited for past it, a 4xx is never
retried, and the fan-out degrades to the backends that answered, the others visible in
the outcomes and the metrics. Real sockets and real time: generous margins, no mock clock.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from prometheus_client import CollectorRegistry

from stepwatch import (
    Flow,
    FlowExecutor,
    Parallel,
    Request,
    Retry,
    RunResult,
    Status,
    StepFailedError,
)
from stepwatch.http import DeadlineTransport
from tests.helpers import sample

from .apps import _lifespan
from .servers import running

pytestmark = pytest.mark.anyio

QUICK = Retry(attempts=4, initial=0.02, max_delay=2, jitter=False)


@dataclass
class Backends:
    """One ASGI app serving every backend, by path; counts the calls to each path.

    ``/inventory``, ``/pricing``: 200. ``/flaky``: 503 for the first ``flaky_failures``
    calls, then 200. ``/throttled``: 429 with ``Retry-After: <retry_after>`` on the first
    call, then 200. ``/missing``: 404. ``/broken``: 500. ``/hang``: never answers (returns
    when the client goes away).
    """

    flaky_failures: int = 2
    retry_after: str = "0.3"
    calls: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path = scope["path"]
        self.calls[path].append(anyio.current_time())
        n = len(self.calls[path])
        headers: list[tuple[bytes, bytes]] = []
        if path in ("/inventory", "/pricing"):
            status, body = 200, {"from": path[1:]}
        elif path == "/flaky":
            status, body = (503, {}) if n <= self.flaky_failures else (200, {"from": "flaky"})
        elif path == "/throttled":
            if n == 1:
                status, body = 429, {}
                headers.append((b"retry-after", self.retry_after.encode()))
            else:
                status, body = 200, {"from": "throttled"}
        elif path == "/missing":
            status, body = 404, {}
        elif path == "/broken":
            status, body = 500, {}
        elif path == "/hang":
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(path)
        headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    def count(self, path: str) -> int:
        return len(self.calls[path])


@asynccontextmanager
async def dropping_server(drops: int) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw HTTP/1.1 server on 127.0.0.1 that closes its first ``drops`` connections
    without answering (httpx raises a transport error), then answers 200."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    connections = [0]

    async def handle(stream: SocketStream) -> None:
        async with stream:
            connections[0] += 1
            if connections[0] <= drops:
                return  # hang up at once
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
            body = b'{"from": "dropping"}'
            await stream.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        try:
            yield f"http://127.0.0.1:{port}", connections
        finally:
            group.cancel_scope.cancel()


def client() -> httpx.AsyncClient:
    """httpx with stepwatch's deadline transport, as a service would use it."""
    transport = DeadlineTransport(httpx.AsyncHTTPTransport(verify=False, retries=0))
    return httpx.AsyncClient(transport=transport, timeout=10)


def getter(http: httpx.AsyncClient, base: str) -> Callable[[str], Any]:
    """The handler every step uses: GET base + path, raise_for_status(), the JSON."""

    async def get(path: str) -> Any:
        response = await http.get(base + path)
        response.raise_for_status()
        return response.json()

    return get


@asynccontextmanager
async def service(backend: str, backends: Backends) -> AsyncIterator[Callable[..., Any]]:
    """Serve ``backends``; yield ``run(steps, timeout=...)`` running a flow against them."""
    async with running(backends, backend) as base, client() as http:
        executor = FlowExecutor(
            handlers={"get": getter(http, base)}, metrics=False, tracing=False, logging=False
        )

        async def run(steps: Any, *, timeout: float | None = 5.0) -> RunResult:
            return await executor.run(Flow("page", steps, timeout=timeout))

        yield run


class TestRetries:
    async def test_a_flaky_backend_is_retried(self, backend: str) -> None:
        """Two 503s, then an answer: retry=... gets it on the third call."""
        backends = Backends(flaky_failures=2)
        async with service(backend, backends) as run:
            result = await run(Request("flaky", "get", "/flaky", retry=QUICK))
        assert result["flaky"] == {"from": "flaky"}
        assert result.outcomes["flaky"].attempts == 3
        assert backends.count("/flaky") == 3

    async def test_dropped_connections_are_retried(self, backend: str) -> None:
        """A server hanging up without answering is an httpx transport error: retried."""
        async with dropping_server(drops=2) as (base, connections), client() as http:
            executor = FlowExecutor(
                handlers={"get": getter(http, base)}, metrics=False, tracing=False, logging=False
            )
            flow = Flow("page", Request("dropping", "get", "/", retry=QUICK), timeout=5)
            result = await executor.run(flow)
        assert result["dropping"] == {"from": "dropping"}
        assert result.outcomes["dropping"].attempts == 3
        assert connections[0] == 3

    async def test_retry_after_is_honoured_within_the_deadline(self, backend: str) -> None:
        """A 429 with Retry-After: 0.3 delays the retry by at least 0.3 s (the backoff alone
        would be 20 ms); the deadline leaves room, so the call succeeds."""
        backends = Backends(retry_after="0.3")
        async with service(backend, backends) as run:
            result = await run(Request("t", "get", "/throttled", retry=QUICK), timeout=5)
        assert result["t"] == {"from": "throttled"}
        first, second = backends.calls["/throttled"]
        assert 0.3 <= second - first < 3.0

    async def test_retry_after_past_the_deadline_is_not_waited_for(self, backend: str) -> None:
        """Retry-After: 30 with a 2 s flow deadline: one call, the 429 raised at once, with
        a note saying why there was no retry."""
        backends = Backends(retry_after="30")
        async with service(backend, backends) as run:
            start = anyio.current_time()
            with pytest.raises(StepFailedError) as info:
                await run(Request("t", "get", "/throttled", retry=QUICK), timeout=2.0)
            took = anyio.current_time() - start
        assert took < 1.5  # not slept until the deadline
        assert backends.count("/throttled") == 1
        cause = info.value.__cause__
        assert isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 429
        assert "no retry: the next attempt would start after the deadline" in cause.__notes__[0]

    @pytest.mark.parametrize("path", ["/missing", "/broken"])
    async def test_client_errors_are_never_retried(self, backend: str, path: str) -> None:
        """A 404 (or a 500) is sent once, whatever the retry policy allows."""
        backends = Backends()
        async with service(backend, backends) as run:
            with pytest.raises(StepFailedError) as info:
                await run(Request("x", "get", path, retry=QUICK))
        assert backends.count(path) == 1
        assert info.value.retryable is False
        assert info.value.attempts == 1


class Aggregator:
    """The test service: an ASGI app whose ``/page`` fans out to five backends and answers
    with what came back (200), naming the backends that did not answer."""

    def __init__(self, executor: FlowExecutor) -> None:
        self.executor = executor
        self.flow = Flow(
            "page",
            Parallel(
                "backends",
                [
                    Request("inventory", "get", "/inventory"),
                    Request("pricing", "get", "/pricing"),
                    Request("flaky", "get", "/flaky", retry=QUICK),
                    Request("reviews", "get", "/broken", retry=QUICK),
                    Request("recommendations", "get", "/hang", timeout=0.3),
                ],
                timeout=2.0,
                on_timeout="partial",
                on_failure="partial",
            ),
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        result = await self.executor.run(self.flow)
        outcomes = result.outcomes
        children = self.flow.steps[0].children()
        missing = [c.name for c in children if not outcomes[c.name].ok]
        body = {
            "answered": result["backends"],
            "missing": {name: outcomes[name].status.value for name in missing},
        }
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class TestDegradingService:
    async def test_the_page_has_the_backends_that_answered(self, backend: str) -> None:
        """One backend failing (500) and one hanging past its timeout no longer make the
        page fail: it shows the three that answered (one after retries) and names the two
        that did not; the failures are in the metrics."""
        backends = Backends(flaky_failures=1)
        registry = CollectorRegistry()
        async with running(backends, backend) as base, client() as http:
            executor = FlowExecutor(
                handlers={"get": getter(http, base)}, registry=registry, logging=False
            )
            async with running(Aggregator(executor), backend) as page, client() as browser:
                response = await browser.get(page + "/page")
        assert response.status_code == 200
        assert response.json() == {
            "answered": {
                "inventory": {"from": "inventory"},
                "pricing": {"from": "pricing"},
                "flaky": {"from": "flaky"},
            },
            "missing": {"reviews": "failed", "recommendations": "timed_out"},
        }
        assert backends.count("/flaky") == 2 and backends.count("/broken") == 1

        def count(step: str, outcome: str) -> float:
            labels = {"flow": "page", "step": step, "step_type": "request", "outcome": outcome}
            return sample(registry, "stepwatch_step_duration_seconds_count", **labels)

        assert count("reviews", "failure") == 1
        assert count("recommendations", "timeout") == 1
        assert count("flaky", "success") == 1
        labels = {"flow": "page", "step": "backends", "step_type": "parallel", "outcome": "success"}
        assert sample(registry, "stepwatch_step_duration_seconds_count", **labels) == 1
        flow = {"flow": "page", "outcome": "success"}
        assert sample(registry, "stepwatch_flow_duration_seconds_count", **flow) == 1

    async def test_without_degrading_the_same_page_fails(self, backend: str) -> None:
        """The contrast: the default fan-out fails with the first failing backend."""
        backends = Backends(flaky_failures=0)
        async with service(backend, backends) as run:
            group = Parallel(
                "backends",
                [Request("inventory", "get", "/inventory"), Request("reviews", "get", "/broken")],
            )
            with pytest.raises(StepFailedError) as info:
                await run(group)
        assert info.value.step_name == "reviews"
        assert info.value.result is not None
        assert info.value.result.outcomes["reviews"].status is Status.FAILED
