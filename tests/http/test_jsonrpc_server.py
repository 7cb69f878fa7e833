"""JsonRpcApp against the JSON-RPC 2.0 specification's examples, and under deadlines."""

from __future__ import annotations

import json
from typing import Any, cast

import anyio
import pytest
from prometheus_client import CollectorRegistry

from stepwatch import ValidationError
from stepwatch.http import InboundBudget, JsonRpcApp, JsonRpcError
from tests.helpers import sample

from .servers import http_client, running

pytestmark = pytest.mark.anyio

PARSE_ERROR = {"code": -32700, "message": "Parse error"}
INVALID_REQUEST = {"code": -32600, "message": "Invalid Request"}
NOT_FOUND = {"code": -32601, "message": "Method not found"}


async def _noop() -> None:
    return None


class Calls:
    """The methods of the specification's examples, counting what ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def methods(self) -> dict[str, Any]:
        async def subtract(minuend: int, subtrahend: int) -> int:
            self.ran.append("subtract")
            return minuend - subtrahend

        async def total(*numbers: int) -> int:
            self.ran.append("sum")
            return sum(numbers)

        async def note(*args: Any) -> None:
            self.ran.append("notification")

        async def get_data() -> list[Any]:
            self.ran.append("get_data")
            return ["hello", 5]

        return {
            "subtract": subtract,
            "sum": total,
            "update": note,
            "notify_hello": note,
            "notify_sum": note,
            "get_data": get_data,
        }


async def _post(url: str, body: str | bytes, **headers: str) -> tuple[int, Any]:
    async with http_client() as client:
        response = await client.post(url, content=body, headers=headers)
    return response.status_code, (response.json() if response.content else None)


class TestSpecificationExamples:
    """Section 7 of the JSON-RPC 2.0 specification, request by request."""

    EXAMPLES: list[tuple[str, Any]] = [
        (
            '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
            {"jsonrpc": "2.0", "result": 19, "id": 1},
        ),
        (
            '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
            {"jsonrpc": "2.0", "result": -19, "id": 2},
        ),
        (
            '{"jsonrpc": "2.0", "method": "subtract", '
            '"params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
            {"jsonrpc": "2.0", "result": 19, "id": 3},
        ),
        ('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
        ('{"jsonrpc": "2.0", "method": "foobar"}', None),
        (
            '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
            {"jsonrpc": "2.0", "error": NOT_FOUND, "id": "1"},
        ),
        (
            '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
            {"jsonrpc": "2.0", "error": PARSE_ERROR, "id": None},
        ),
        (
            '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
            {"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None},
        ),
        (
            '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
            '{"jsonrpc": "2.0", "method"]',
            {"jsonrpc": "2.0", "error": PARSE_ERROR, "id": None},
        ),
        ("[]", {"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None}),
        ("[1]", [{"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None}]),
        ("[1,2,3]", [{"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None}] * 3),
        (
            """[
            {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
            {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
            {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
            {"foo": "boo"},
            {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
            {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
            ]""",
            [
                {"jsonrpc": "2.0", "result": 7, "id": "1"},
                {"jsonrpc": "2.0", "result": 19, "id": "2"},
                {"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None},
                {"jsonrpc": "2.0", "error": NOT_FOUND, "id": "5"},
                {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
            ],
        ),
        (
            '[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
            '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]',
            None,
        ),
    ]

    async def test_every_example_gets_the_specified_answer(self, backend: str) -> None:
        """Each request of the specification gets exactly its documented response (or none)."""
        calls = Calls()
        app = JsonRpcApp(calls.methods(), metrics=False)
        async with running(app, backend) as url:
            for request, expected in self.EXAMPLES:
                status, answer = await _post(url, request)
                assert answer == expected, request
                assert status == (204 if expected is None else 200), request
        assert calls.ran.count("notification") == 4  # update, notify_hello ×2, notify_sum
        assert calls.ran.count("subtract") == 4 and calls.ran.count("get_data") == 1


class TestErrors:
    """Errors of the methods and of the requests themselves."""

    async def test_an_exception_whose_str_raises_is_an_internal_error(self, backend: str) -> None:
        """A method raising an exception whose __str__ itself raises is answered -32603
        (and logged), never a 500."""

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no text")

        async def broken() -> None:
            raise Unprintable()

        app = JsonRpcApp({"broken": broken}, metrics=False)
        body = json.dumps({"jsonrpc": "2.0", "method": "broken", "id": 7})
        async with running(app, backend) as url:
            status, answer = await _post(url, body)
        assert status == 200
        assert answer["id"] == 7 and answer["error"]["code"] == -32603

    async def test_method_errors(self, backend: str) -> None:
        """Bad params, a raised JsonRpcError, a crash and an unencodable result."""

        async def quote(sku: str, qty: int = 1) -> dict[str, Any]:
            if sku == "gone":
                raise JsonRpcError(-32010, "out of stock", {"sku": sku})
            if sku == "crash":
                raise RuntimeError("secret internals")
            if sku == "nan":
                return {"price": float("nan")}
            return {"price": 2.5 * qty}

        app = JsonRpcApp({"quote": quote}, metrics=False)

        def call(params: Any, id_: int) -> str:
            return json.dumps({"jsonrpc": "2.0", "method": "quote", "params": params, "id": id_})

        async with running(app, backend) as url:
            ok = await _post(url, call({"sku": "A", "qty": 2}, 1))
            bad_params = await _post(url, call({"sku": "A", "colour": "red"}, 2))
            too_many = await _post(url, call(["A", 1, 2], 3))
            gone = await _post(url, call(["gone"], 4))
            crash = await _post(url, call(["crash"], 5))
            nan = await _post(url, call(["nan"], 6))
        assert ok == (200, {"jsonrpc": "2.0", "result": {"price": 5.0}, "id": 1})
        for (status, answer), id_ in ((bad_params, 2), (too_many, 3)):
            assert status == 200 and answer["id"] == id_
            assert (
                answer["error"]["code"] == -32602 and answer["error"]["message"] == "Invalid params"
            )
            assert isinstance(answer["error"]["data"], str)
        assert gone[1]["error"] == {
            "code": -32010,
            "message": "out of stock",
            "data": {"sku": "gone"},
        }
        assert crash[1]["error"] == {"code": -32603, "message": "Internal error"}  # no leak
        assert nan[1]["error"] == {"code": -32603, "message": "Internal error"}

    async def test_nan_and_infinity_are_not_json(self, backend: str) -> None:
        """NaN, Infinity and 1e400 in a request are parse errors; no answer ever holds them."""
        ran: list[Any] = []

        async def echo(*args: Any) -> str:
            ran.append(args)
            return "ok"

        async def fail() -> None:
            raise JsonRpcError(-32010, "nope", {"ratio": float("nan")})

        app = JsonRpcApp({"echo": echo, "fail": fail}, metrics=False)
        bodies = [
            '{"jsonrpc": "2.0", "method": "echo", "id": NaN}',
            '{"jsonrpc": "2.0", "method": "echo", "id": 1e400}',
            '{"jsonrpc": "2.0", "method": "nosuch", "id": -Infinity}',
            '{"jsonrpc": "2.0", "method": "echo", "params": [NaN], "id": 1}',
            '{"jsonrpc": "2.0", "method": "echo", "params": [-1E+999], "id": 1}',
            '[{"jsonrpc": "2.0", "method": "echo", "id": 1},'
            ' {"jsonrpc": "2.0", "method": "echo", "params": [Infinity], "id": 2}]',
        ]

        def no_constants(name: str) -> Any:
            raise AssertionError(f"{name} in an answer")

        answers = []
        async with running(app, backend) as url, http_client() as client:
            for body in [*bodies, '{"jsonrpc": "2.0", "method": "fail", "id": 3}']:
                response = await client.post(url, content=body)
                assert response.status_code == 200, body
                answers.append(json.loads(response.content, parse_constant=no_constants))
        for answer, body in zip(answers, bodies, strict=False):
            assert answer == {"jsonrpc": "2.0", "error": PARSE_ERROR, "id": None}, body
        assert answers[-1]["error"] == {"code": -32010, "message": "nope"}  # data left out
        assert ran == []

    async def test_error_data_json_cannot_encode(self, backend: str) -> None:
        """Unencodable data is left out of the error, never a 500; a batch keeps the rest."""
        cycle: list[Any] = []
        cycle.append(cycle)

        async def fail(kind: str) -> None:
            if kind == "object":
                raise JsonRpcError(-32010, "nope", {"when": object()})
            if kind == "cycle":
                raise JsonRpcError(-32011, "loop", cycle)
            raise JsonRpcError(cast("Any", "not a code"), "bad code")

        async def ok() -> str:
            return "done"

        app = JsonRpcApp({"fail": fail, "ok": ok}, metrics=False)
        batch = [
            {"jsonrpc": "2.0", "method": "ok", "id": 1},
            {"jsonrpc": "2.0", "method": "fail", "params": ["object"], "id": 2},
            {"jsonrpc": "2.0", "method": "fail", "params": ["cycle"], "id": 3},
            {"jsonrpc": "2.0", "method": "fail", "params": ["code"], "id": 4},
            {"jsonrpc": "2.0", "method": "fail", "params": ["object"]},
            {"jsonrpc": "2.0", "method": "ok", "id": 5},
        ]
        async with running(app, backend) as url:
            single = await _post(url, json.dumps(batch[1]))
            status, answer = await _post(url, json.dumps(batch))
        assert single == (
            200,
            {"jsonrpc": "2.0", "error": {"code": -32010, "message": "nope"}, "id": 2},
        )
        assert status == 200
        assert answer == [
            {"jsonrpc": "2.0", "result": "done", "id": 1},
            {"jsonrpc": "2.0", "error": {"code": -32010, "message": "nope"}, "id": 2},
            {"jsonrpc": "2.0", "error": {"code": -32011, "message": "loop"}, "id": 3},
            {"jsonrpc": "2.0", "error": {"code": -32603, "message": "Internal error"}, "id": 4},
            {"jsonrpc": "2.0", "result": "done", "id": 5},
        ]

    async def test_transport_level_errors(self, backend: str) -> None:
        """Wrong HTTP method 405, oversized body 413, absurd nesting a parse error."""
        app = JsonRpcApp({"f": _noop}, max_body_size=300_000, metrics=False)
        async with running(app, backend) as url, http_client() as client:
            get = await client.get(url)
            big = await client.post(url, content=b"[" + b"1," * 200_000 + b"1]")
            deep = await client.post(url, content=b"[" * 100_000 + b"]" * 100_000)
        assert get.status_code == 405 and get.json()["error"]["code"] == -32600
        assert get.headers["allow"] == "POST"
        assert big.status_code == 413 and big.json()["error"]["code"] == -32600
        assert deep.status_code == 200 and deep.json()["error"] == PARSE_ERROR

    async def test_batch_limit(self, backend: str) -> None:
        """A batch longer than max_batch is one Invalid Request error."""
        app = JsonRpcApp({"f": _noop}, max_batch=2, metrics=False)
        batch = [{"jsonrpc": "2.0", "method": "f", "id": i} for i in range(3)]
        async with running(app, backend) as url:
            status, answer = await _post(url, json.dumps(batch))
        assert status == 200 and answer["error"]["code"] == -32600 and answer["id"] is None


class TestDeadlines:
    """Every request runs under its inbound budget; the answer says what was cut."""

    async def test_spent_on_arrival_never_calls_a_method(
        self, backend: str, registry: CollectorRegistry
    ) -> None:
        """504 with -32001 and id null (the body was never read); no method ran."""
        calls = Calls()
        app = JsonRpcApp(calls.methods(), registry=registry)
        body = '{"jsonrpc": "2.0", "method": "get_data", "id": 7}'
        async with running(app, backend) as url:
            status, answer = await _post(url, body, **{"grpc-timeout": "0m"})
        assert status == 504
        assert answer == {
            "jsonrpc": "2.0",
            "error": {"code": -32001, "message": "Deadline exceeded"},
            "id": None,
        }
        assert calls.ran == []
        assert sample(registry, "stepwatch_inbound_rejected_total", reason="spent") == 1

    async def test_a_call_cut_off_is_answered_with_its_id(self, backend: str) -> None:
        """The method is cancelled at the deadline; 504 with -32001 and the call's id."""
        state = {"cancelled": 0}

        async def slow() -> None:
            try:
                await anyio.sleep(10)
            except anyio.get_cancelled_exc_class():
                state["cancelled"] += 1
                raise

        app = JsonRpcApp({"slow": slow}, budget=InboundBudget(default=5), metrics=False)
        body = '{"jsonrpc": "2.0", "method": "slow", "id": "abc"}'
        async with running(app, backend) as url:
            with anyio.fail_after(5):
                status, answer = await _post(url, body, **{"x-request-timeout-ms": "150"})
        assert status == 504
        assert answer["id"] == "abc" and answer["error"]["code"] == -32001
        assert state["cancelled"] == 1

    async def test_a_batch_keeps_what_finished(self, backend: str) -> None:
        """Finished calls keep their results; unfinished ones get -32001; notifications none."""

        async def fast() -> str:
            return "done"

        async def slow() -> None:
            await anyio.sleep(10)

        app = JsonRpcApp({"fast": fast, "slow": slow}, metrics=False)
        batch = [
            {"jsonrpc": "2.0", "method": "fast", "id": 1},
            {"jsonrpc": "2.0", "method": "slow", "id": 2},
            {"jsonrpc": "2.0", "method": "slow"},
        ]
        async with running(app, backend) as url:
            with anyio.fail_after(5):
                status, answer = await _post(url, json.dumps(batch), **{"grpc-timeout": "150m"})
        assert status == 504
        assert answer == [
            {"jsonrpc": "2.0", "result": "done", "id": 1},
            {"jsonrpc": "2.0", "error": {"code": -32001, "message": "Deadline exceeded"}, "id": 2},
        ]

    async def test_invalid_budget_in_reject_mode(self, backend: str) -> None:
        """InboundBudget(on_invalid='reject'): 400 with an Invalid Request error."""
        app = JsonRpcApp({"f": _noop}, budget=InboundBudget(on_invalid="reject"), metrics=False)
        body = '{"jsonrpc": "2.0", "method": "f", "id": 1}'
        async with running(app, backend) as url:
            status, answer = await _post(url, body, **{"grpc-timeout": "soon"})
        assert status == 400 and answer["error"]["code"] == -32600


class TestDefinition:
    """Bad definitions are ValidationErrors at construction."""

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"methods": {"rpc.discover": _noop}}, "JsonRpcApp.methods"),
            ({"methods": {"": _noop}}, "JsonRpcApp.methods"),
            ({"methods": {"f": 42}}, "JsonRpcApp.methods['f']"),
            ({"methods": [("f", _noop)]}, "JsonRpcApp.methods"),
            ({"methods": {}, "max_body_size": 0}, "JsonRpcApp.max_body_size"),
            ({"methods": {}, "max_batch": True}, "JsonRpcApp.max_batch"),
            ({"methods": {}, "budget": 5}, "JsonRpcApp.budget"),
        ],
    )
    def test_bad_definitions(self, kwargs: dict[str, Any], field: str) -> None:
        """Each error names the field."""
        with pytest.raises(ValidationError) as info:
            JsonRpcApp(**kwargs)
        assert info.value.field == field
