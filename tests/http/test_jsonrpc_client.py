"""JsonRpcClient: results, error objects, invalid answers, retryability, deadlines."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry

from stepwatch import (
    Flow,
    FlowExecutor,
    Request,
    Retry,
    StepFailedError,
    StepTimeoutError,
    ValidationError,
)
from stepwatch.http import (
    BudgetExhaustedError,
    JsonRpcApp,
    JsonRpcCallError,
    JsonRpcClient,
    JsonRpcError,
    JsonRpcProtocolError,
    JsonRpcTransportError,
    OutboundBudget,
)
from stepwatch.http._budget import parse_ms
from tests.helpers import sample

from .apps import _lifespan
from .servers import http_client, running

pytestmark = pytest.mark.anyio

Responder = Callable[[dict[str, Any]], tuple[int, bytes]]


def _answer(call: dict[str, Any], **members: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **members, "id": call.get("id")}).encode()


class Canned:
    """ASGI app answering each method with a canned (status, body), counting calls."""

    def __init__(self, responders: dict[str, Responder]) -> None:
        self.responders = responders
        self.calls: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        call = json.loads(body)
        self.calls.append(call)
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        method = call["method"]
        status, answer = self.responders[method](call)
        headers = [(b"content-type", b"application/json")]
        if not method.startswith("chunked"):
            headers.append((b"content-length", str(len(answer)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for start in range(0, len(answer), 1000):  # several body messages
            piece = answer[start : start + 1000]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def _json(**members: Any) -> bytes:
    return json.dumps(members).encode()


def _error(code: int, message: str, **more: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **more}


INVALID: dict[str, Responder] = {
    "html": lambda c: (200, b"<html>oops</html>"),
    "empty": lambda c: (200, b""),
    "array": lambda c: (200, b"[" + _answer(c, result=1) + b"]"),
    "version": lambda c: (200, _json(jsonrpc="1.0", result=1, id=c["id"])),
    "both": lambda c: (200, _answer(c, result=1, error=_error(1, "x"))),
    "neither": lambda c: (200, _answer(c)),
    "other-id": lambda c: (200, _json(jsonrpc="2.0", result=1, id=c["id"] + 1)),
    "no-id": lambda c: (200, _json(jsonrpc="2.0", result=1)),
    "string-id": lambda c: (200, _json(jsonrpc="2.0", result=1, id=str(c["id"]))),
    "bool-id": lambda c: (200, _json(jsonrpc="2.0", result=1, id=True)),
    "bad-error": lambda c: (200, _answer(c, error={"code": "x", "message": "m"})),
    "foreign-error": lambda c: (200, _json(jsonrpc="2.0", error=_error(1, "m"), id=99)),
    "huge": lambda c: (200, _answer(c, result="x" * 5000)),
    "chunked-huge": lambda c: (200, _answer(c, result="x" * 5000)),
    "not-found-html": lambda c: (404, b"<html>not found</html>"),
}

OTHER: dict[str, Responder] = {
    "ok": lambda c: (200, _answer(c, result={"echo": c.get("params")})),
    "null-id-error": lambda c: (
        200,
        _json(jsonrpc="2.0", error=_error(-32600, "Invalid Request"), id=None),
    ),
    "app-error": lambda c: (
        200,
        _answer(c, error=_error(-32010, "out of stock", data={"sku": "A"})),
    ),
    "internal-500": lambda c: (500, _answer(c, error=_error(-32603, "Internal error"))),
    "busy-503": lambda c: (503, b"overloaded"),
    "busy-429": lambda c: (429, b""),
    "bad-gateway": lambda c: (502, b"<html>502</html>"),
    "deadline-504": lambda c: (504, _answer(c, error=_error(-32001, "Deadline exceeded"))),
    "notified": lambda c: (204, b""),
}


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


class TestCalls:
    """Successful calls, from code and as stepwatch handlers."""

    async def test_results_params_and_notifications(self, backend: str) -> None:
        """Params as object, array or absent reach the server; a notification has no id."""
        canned = Canned(OTHER)
        async with running(canned, backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, metrics=False)
            by_name = await client.call("ok", {"sku": "A"})
            by_position = await client.call("ok", ("A", 2))
            without = await client.call("ok")
            assert await client.notify("notified", [1]) is None
        assert by_name == {"echo": {"sku": "A"}} and by_position == {"echo": ["A", 2]}
        assert without == {"echo": None} and "params" not in canned.calls[2]
        assert "id" not in canned.calls[3] and canned.calls[3]["params"] == [1]
        ids = [c["id"] for c in canned.calls[:3]]
        assert len(set(ids)) == 3

    async def test_handlers_in_a_flow(self, backend: str, registry: CollectorRegistry) -> None:
        """The step's method is the JSON-RPC method; the step's params its params."""
        canned = Canned(OTHER)
        async with running(canned, backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, target="pricing", registry=registry)
            handlers = client.handlers("ok", "app-error")
            assert set(handlers) == {"ok", "app-error"}
            executor = FlowExecutor(handlers=handlers, tracing=False, metrics=False)
            flow = Flow("page", [Request("price", "ok", lambda ctx: {"sku": ctx.input}, timeout=2)])
            result = await executor.run(flow, input="B-2")
        assert result["price"] == {"echo": {"sku": "B-2"}}
        sent = parse_ms(canned.headers[0]["x-request-timeout-ms"])
        assert sent is not None and 1.5 < sent <= 1.99
        assert sample(registry, "stepwatch_outbound_requests_total", target="pricing") == 1

    async def test_an_error_object_becomes_a_step_failure(self, backend: str) -> None:
        """StepFailedError names the step; its cause carries code, message and data."""
        async with running(Canned(OTHER), backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, metrics=False)
            executor = FlowExecutor(
                handlers=client.handlers("app-error"), tracing=False, metrics=False
            )
            with pytest.raises(StepFailedError) as info:
                await executor.run(Flow("page", [Request("stock", "app-error", retry=3)]))
        error = info.value
        assert error.step_name == "stock" and error.retryable is False and error.attempts == 1
        cause = error.__cause__
        assert isinstance(cause, JsonRpcError)
        assert (cause.code, cause.message, cause.data) == (-32010, "out of stock", {"sku": "A"})
        assert (cause.method, cause.url, cause.http_status) == ("app-error", url, 200)
        assert "JSON-RPC error -32010: out of stock" in str(cause)

    async def test_params_that_are_not_structured(self, backend: str) -> None:
        """A scalar or an unencodable value is a TypeError/ValueError, and nothing is sent."""
        canned = Canned(OTHER)
        async with running(canned, backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, metrics=False)
            with pytest.raises(TypeError):
                await client.call("ok", 5)
            with pytest.raises(TypeError):
                await client.call("ok", "abc")
            with pytest.raises(ValueError, match="JSON"):
                await client.call("ok", {"x": float("nan")})
        assert canned.calls == []

    async def test_own_client_is_closed(self, backend: str) -> None:
        """Without a client, one is made and aclose()/async with closes it."""
        async with running(Canned(OTHER), backend) as url:
            async with JsonRpcClient(url, metrics=False) as client:
                assert await client.call("ok", [1]) == {"echo": [1]}
            assert client._client.is_closed


class TestInvalidAnswers:
    """Answers that are not a valid JSON-RPC response to the call: protocol errors."""

    async def test_each_is_a_protocol_error(self, backend: str) -> None:
        """Not JSON, an array, wrong version, both/neither, id mismatch, malformed error,
        too large, an HTML 404: JsonRpcProtocolError, not retryable."""
        async with running(Canned(INVALID), backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, max_response_size=4096, metrics=False)
            messages = {}
            for method in INVALID:
                with pytest.raises(JsonRpcProtocolError) as info:
                    await client.call(method, [1])
                assert info.value.retryable is False, method
                assert info.value.method == method
                messages[method] = str(info.value)
        assert "id mismatch" in messages["other-id"] and "id mismatch" in messages["bool-id"]
        assert "larger than 4096" in messages["chunked-huge"]
        assert "not JSON" in messages["html"]

    async def test_nan_and_infinity_are_not_json(self, backend: str) -> None:
        """NaN, Infinity and 1e400 anywhere in an answer (even an error's data): not JSON."""
        members = [
            b'"result": NaN',
            b'"result": [1, Infinity]',
            b'"result": {"x": -Infinity}',
            b'"result": 1e400',
            b'"error": {"code": -32010, "message": "m", "data": NaN}',
        ]
        responders: dict[str, Responder] = {
            f"m{i}": lambda c, m=m: (200, b'{"jsonrpc": "2.0", %b, "id": %d}' % (m, c["id"]))
            for i, m in enumerate(members)
        }
        async with running(Canned(responders), backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, metrics=False)
            for method in responders:
                with pytest.raises(JsonRpcProtocolError, match="not JSON"):
                    await client.call(method)

    @pytest.mark.parametrize("declared", [b"\xb2", b"\xd9\xa3", b"", b"-1", b"0x23"])
    async def test_an_invalid_content_length(self, declared: bytes) -> None:
        """A Content-Length that is not ASCII digits (even "²", which isdigit() accepts)."""
        body = b'{"jsonrpc": "2.0", "result": 1, "id": 1}'

        def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=body, headers=[(b"content-length", declared)])

        http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        client = JsonRpcClient("http://svc/rpc", http, metrics=False)
        with pytest.raises(JsonRpcProtocolError, match="invalid Content-Length") as info:
            await client.call("m")
        assert info.value.retryable is False and info.value.http_status == 200

    async def test_an_error_with_a_null_id_is_accepted(self, backend: str) -> None:
        """The specification answers requests it could not identify with id null."""
        async with running(Canned(OTHER), backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, metrics=False)
            with pytest.raises(JsonRpcError) as info:
                await client.call("null-id-error")
        assert info.value.code == -32600


class TestRetryable:
    """Transport failures and overload are retryable; application errors are not."""

    @pytest.mark.parametrize(
        ("method", "kind", "retryable", "status"),
        [
            ("busy-503", JsonRpcTransportError, True, 503),
            ("busy-429", JsonRpcTransportError, True, 429),
            ("bad-gateway", JsonRpcTransportError, True, 502),
            ("deadline-504", JsonRpcError, True, 504),
            ("internal-500", JsonRpcError, False, 500),
            ("app-error", JsonRpcError, False, 200),
        ],
    )
    async def test_classification(
        self, backend: str, method: str, kind: type[Exception], retryable: bool, status: int
    ) -> None:
        """Each answer gives the documented error type, retryability and HTTP status."""
        async with running(Canned(OTHER), backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, metrics=False)
            with pytest.raises(JsonRpcCallError) as info:
                await client.call(method)
        assert type(info.value) is kind
        assert (info.value.retryable, info.value.http_status) == (retryable, status)

    async def test_connection_refused(self) -> None:
        """Nobody listening: a retryable JsonRpcTransportError caused by httpx.ConnectError."""
        async with http_client() as http:
            client = JsonRpcClient(f"http://127.0.0.1:{_closed_port()}/rpc", http, metrics=False)
            with pytest.raises(JsonRpcTransportError) as info:
                await client.call("ok")
        assert info.value.retryable is True
        assert isinstance(info.value.__cause__, httpx.ConnectError)

    async def test_custom_retryable_codes(self, backend: str) -> None:
        """retryable_codes makes an application's own overload code retryable."""
        async with running(Canned(OTHER), backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, retryable_codes={-32010}, metrics=False)
            with pytest.raises(JsonRpcError) as info:
                await client.call("app-error")
        assert info.value.retryable is True

    async def test_retries_in_a_flow(self, backend: str) -> None:
        """Retry(attempts=3) retries a 503 three times and an application error once."""
        canned = Canned(OTHER)
        async with running(canned, backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, metrics=False)
            executor = FlowExecutor(
                handlers=client.handlers("busy-503", "app-error"), tracing=False, metrics=False
            )
            retry = Retry(attempts=3, initial=0.01, jitter=False)
            for method in ("busy-503", "app-error"):
                flow = Flow("f", [Request("s", method, timeout=2, retry=retry)])
                with pytest.raises(StepFailedError):
                    await executor.run(flow)
        methods = [c["method"] for c in canned.calls]
        assert (methods.count("busy-503"), methods.count("app-error")) == (3, 1)


class TestDeadlines:
    """The step's deadline travels with the call; no call goes out without time."""

    async def test_not_sent_without_time(self, backend: str, registry: CollectorRegistry) -> None:
        """Inside a deadline shorter than the margin: BudgetExhaustedError, nothing sent."""
        canned = Canned(OTHER)
        async with running(canned, backend) as url, http_client() as http:
            client = JsonRpcClient(
                url, http, budget=OutboundBudget(margin=0.2), target="t", registry=registry
            )
            with anyio.fail_after(0.1), pytest.raises(BudgetExhaustedError):
                await client.call("ok")
        assert canned.calls == []
        assert sample(registry, "stepwatch_outbound_not_sent_total", target="t") == 1

    async def test_a_cancelled_caller_sends_nothing(self, registry: CollectorRegistry) -> None:
        """Inside a cancelled scope (effective deadline -inf) a call raises the caller's
        cancellation and sends nothing, even through a transport that never checkpoints."""
        sent: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return httpx.Response(200, json={"jsonrpc": "2.0", "result": "ran", "id": 1})

        http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        client = JsonRpcClient("http://svc/rpc", http, target="t", registry=registry)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await client.call("m")
        assert scope.cancelled_caught
        assert sent == []
        assert sample(registry, "stepwatch_outbound_requests_total", target="t") == 0

    async def test_the_server_giving_up_is_our_timeout(self, backend: str) -> None:
        """The server's deadline (ours minus the margin) cuts its method: the step times out."""

        async def slow() -> None:
            await anyio.sleep(10)

        app = JsonRpcApp({"slow": slow}, metrics=False)
        async with running(app, backend) as url, http_client() as http:
            client = JsonRpcClient(url, http, metrics=False)
            executor = FlowExecutor(handlers=client.handlers("slow"), tracing=False, metrics=False)
            with anyio.fail_after(5), pytest.raises(StepTimeoutError) as info:
                await executor.run(Flow("f", [Request("call", "slow", timeout=0.2)]))
        assert info.value.step_name == "call"


class TestDefinition:
    """Bad arguments are ValidationErrors naming the field."""

    @pytest.mark.parametrize(
        ("args", "kwargs", "field"),
        [
            (("ftp://host/rpc",), {}, "JsonRpcClient.url"),
            (("not a url",), {}, "JsonRpcClient.url"),
            ((5,), {}, "JsonRpcClient.url"),
            (("http://h/rpc",), {"retryable_codes": "abc"}, "JsonRpcClient.retryable_codes"),
            (("http://h/rpc",), {"retryable_statuses": [True]}, "JsonRpcClient.retryable_statuses"),
            (("http://h/rpc",), {"max_response_size": 0}, "JsonRpcClient.max_response_size"),
            (("http://h/rpc",), {"target": ""}, "JsonRpcClient.target"),
            (("http://h/rpc",), {"budget": 0.1}, "JsonRpcClient.budget"),
        ],
    )
    def test_bad_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any], field: str) -> None:
        """Each error names its field."""
        http = httpx.AsyncClient()
        with pytest.raises(ValidationError) as info:
            JsonRpcClient(*args, client=http, metrics=False, **kwargs)
        assert info.value.field == field

    def test_default_target_of_a_long_host(self) -> None:
        """A host:port over 100 characters is shortened into a valid target, one per host."""
        http = httpx.AsyncClient()
        stem = "pricing-service-blue-green-canary.team-checkout-payments-prod.eu-west-1"
        hosts = [f"{stem}.compute.internal.example.{tld}:8443" for tld in ("com", "org")]
        targets = [JsonRpcClient(f"http://{h}/rpc", http, metrics=False).target for h in hosts]
        assert all(len(h) > 100 for h in hosts)
        assert targets[0] != targets[1]
        for host, target in zip(hosts, targets, strict=True):
            assert len(target) == 100 and target.startswith(host[:90])
        short = JsonRpcClient("http://pricing:8000/rpc", http, metrics=False)
        assert short.target == "pricing:8000"
        with pytest.raises(ValidationError):  # a target given is checked, not shortened
            JsonRpcClient("http://pricing/rpc", http, target="x" * 101, metrics=False)

    @pytest.mark.parametrize("method", ["", "rpc.discover", 5, None])
    def test_bad_method_names(self, method: Any) -> None:
        """handler()/handlers() reject unusable method names at definition time."""
        client = JsonRpcClient("http://h/rpc", httpx.AsyncClient(), metrics=False)
        with pytest.raises(ValidationError) as info:
            client.handlers("ok", method)
        assert info.value.field == "method" and info.value.value == method
