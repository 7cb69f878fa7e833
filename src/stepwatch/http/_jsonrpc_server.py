"""JsonRpcApp: a mapping of async functions served as a JSON-RPC 2.0 endpoint on ASGI."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._errors import ValidationError
from .._log import log
from .._text import clip, message_of
from ._asgi import ClientGone, Receive, Scope, Send, lifespan, read_body, send_response, serve
from ._config import InboundBudget, config_or_default
from ._errors import JsonRpcCode, JsonRpcError
from ._telemetry import http_metrics
from ._wire import (
    NO_ID,
    answer_id,
    call_id,
    check_method,
    decode,
    encode_error,
    encode_result,
    valid_call,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["JsonRpcApp"]

_JSON: Final = b"application/json"


class _Exchange:
    """One HTTP request's calls: what to answer if its deadline cuts them off."""

    __slots__ = ("batch", "ids", "results")

    def __init__(self) -> None:
        self.batch = False
        self.ids: list[Any] = []  # the id of each call (NO_ID for notifications)
        self.results: list[str | None] = []  # each call's response, once it has one

    def cut_off(self) -> str | None:
        answers = [
            done if done is not None else encode_error(id_, JsonRpcCode.DEADLINE_EXCEEDED)
            for id_, done in zip(self.ids, self.results, strict=True)
            if id_ is not NO_ID
        ]
        if not self.ids:  # not even parsed: the id is unknown
            return encode_error(None, JsonRpcCode.DEADLINE_EXCEEDED)
        if not answers:
            return None
        return f"[{','.join(answers)}]" if self.batch else answers[0]


def _raised(id_: Any, error: JsonRpcError) -> str:
    """The answer to a raised :class:`JsonRpcError`; never raises.

    Its ``data`` is the application's (any object, NaN, a cycle): when JSON cannot encode
    it, the error is answered without it, rather than failing the whole HTTP request (and
    the other calls of its batch); ``-32603`` if not even its code and message encode.
    """
    for answer in (error, JsonRpcError(error.code, error.message)):
        try:
            return encode_error(id_, answer)
        except Exception:  # TypeError, ValueError, RecursionError, or the data's own
            continue
    return encode_error(id_, JsonRpcCode.INTERNAL_ERROR)


class JsonRpcApp:
    """Serve a mapping of async functions as a JSON-RPC 2.0 endpoint (ASGI application).

    A call's ``params`` are passed as keyword arguments (object) or positional arguments
    (array); ``result`` is the function's JSON-serialisable return value. Raise
    :class:`JsonRpcError` to answer with an error object (without its ``data`` if JSON
    cannot encode that); any other exception answers ``-32603 Internal error`` (and is
    logged, ``jsonrpc.method_failed``). Batches run their calls concurrently;
    notifications get no answer (``204`` when nothing is left to answer).

    Every request runs under its inbound time budget, exactly as with
    :class:`DeadlineMiddleware`; when the budget is spent on arrival or runs out, the
    answer is HTTP ``504`` with error ``-32001 Deadline exceeded`` for each unanswered
    call (calls of a batch that finished keep their results). Other answers are HTTP
    ``200``; a wrong HTTP method is ``405``, a body over ``max_body_size`` ``413``.

    Args:
        methods: JSON-RPC method name → async function.
        budget: how to read the budget (:class:`InboundBudget`).
        max_body_size: largest request body read, in bytes.
        max_batch: most calls in one batch.
        metrics: ``False`` records no metrics; ``registry``: the prometheus-client
            registry (the default one if ``None``).

    Raises:
        ValidationError: a method name that is empty, not a string or starts with the
            reserved ``rpc.``, a function that is not callable, a bad limit.
    """

    def __init__(
        self,
        methods: Mapping[str, Callable[..., Any]],
        *,
        budget: InboundBudget | None = None,
        max_body_size: int = 1 << 20,
        max_batch: int = 100,
        metrics: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not isinstance(methods, Mapping):
            raise ValidationError(
                f"JsonRpcApp.methods must be a mapping of method name to async function; "
                f"got {methods!r}",
                field="JsonRpcApp.methods",
                value=methods,
            )
        self._methods: dict[str, tuple[Callable[..., Any], inspect.Signature | None]] = {}
        for name, fn in methods.items():
            where = f"JsonRpcApp.methods[{name!r}]"
            check_method(name, "JsonRpcApp.methods")
            if not callable(fn):
                raise ValidationError(
                    f"{where} must be callable; got {fn!r}", field=where, value=fn
                )
            try:
                signature: inspect.Signature | None = inspect.signature(fn)
            except (TypeError, ValueError):
                signature = None
            self._methods[name] = (fn, signature)
        for field, value in (("max_body_size", max_body_size), ("max_batch", max_batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(
                    f"JsonRpcApp.{field} must be an int >= 1; got {value!r}",
                    field=f"JsonRpcApp.{field}",
                    value=value,
                )
        self.budget = config_or_default("JsonRpcApp.budget", budget, InboundBudget)
        self.max_body_size = max_body_size
        self.max_batch = max_batch
        self._metrics = http_metrics(registry) if metrics else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope (``http``; ``lifespan`` is acknowledged)."""
        kind = scope.get("type")
        if kind == "lifespan":
            await lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        exchange = _Exchange()

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            await self._handle(exchange, scope, receive, send)

        async def reject(send: Send, status: int, reason: str) -> None:
            if reason == "invalid":
                body: str | None = encode_error(
                    None, JsonRpcCode.INVALID_REQUEST, "invalid time budget"
                )
            else:
                body = exchange.cut_off()
            await send_response(send, status, (body or "").encode(), _JSON)

        await serve(
            handle,
            scope,
            receive,
            send,
            config=self.budget,
            metrics=self._metrics,
            reject=reject,
        )

    async def _handle(
        self, exchange: _Exchange, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if scope.get("method") != "POST":
            body = encode_error(None, JsonRpcCode.INVALID_REQUEST, "use POST").encode()
            await send_response(send, 405, body, _JSON, [(b"allow", b"POST")])
            return
        try:
            raw = await read_body(receive, self.max_body_size)
        except ClientGone:
            return  # nobody to answer
        if raw is None:
            body = encode_error(
                None, JsonRpcCode.INVALID_REQUEST, "request body too large"
            ).encode()
            await send_response(send, 413, body, _JSON)
            return
        try:
            message = decode(raw)  # NaN, Infinity, 1e400: not JSON, a parse error
        except (ValueError, RecursionError):
            await send_response(
                send, 200, encode_error(None, JsonRpcCode.PARSE_ERROR).encode(), _JSON
            )
            return
        if isinstance(message, list):
            answer = await self._batch(exchange, message)
        else:
            exchange.ids.append(call_id(message))
            exchange.results.append(None)
            answer = await self._call(message)
            exchange.results[0] = answer
        if answer is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send_response(send, 200, answer.encode(), _JSON)

    async def _batch(self, exchange: _Exchange, calls: list[Any]) -> str | None:
        if not calls:  # exactly the specification's answer
            return encode_error(None, JsonRpcCode.INVALID_REQUEST)
        if len(calls) > self.max_batch:
            detail = f"batch larger than {self.max_batch}"
            return encode_error(None, JsonRpcCode.INVALID_REQUEST, detail)
        exchange.batch = True
        exchange.ids = [call_id(call) for call in calls]
        exchange.results = [None] * len(calls)

        async def one(index: int, call: Any) -> None:
            exchange.results[index] = await self._call(call)

        async with anyio.create_task_group() as group:
            for index, call in enumerate(calls):
                group.start_soon(one, index, call)
        answers = [r for r in exchange.results if r is not None]
        return f"[{','.join(answers)}]" if answers else None

    async def _call(self, call: Any) -> str | None:
        """Run one call; its response text, or ``None`` for a notification."""
        checked = valid_call(call)
        if checked is None:
            return encode_error(answer_id(call), JsonRpcCode.INVALID_REQUEST)
        method, params, id_ = checked
        notification = id_ is NO_ID
        entry = self._methods.get(method)
        if entry is None:
            return None if notification else encode_error(id_, JsonRpcCode.METHOD_NOT_FOUND)
        fn, signature = entry
        args, kwargs = (params, {}) if isinstance(params, list) else ((), params or {})
        if signature is not None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                if notification:
                    return None
                return encode_error(id_, JsonRpcCode.INVALID_PARAMS, str(exc)[:200])
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            if notification:
                return None
            encoded = json.dumps(result, allow_nan=False, separators=(",", ":"))
        except JsonRpcError as exc:
            return None if notification else _raised(id_, exc)
        except Exception as exc:
            log(
                logging.WARNING,
                "jsonrpc.method_failed",
                {
                    "method": method,
                    "error_type": type(exc).__qualname__,
                    "error": clip(message_of(exc), 200),
                },
            )
            return None if notification else encode_error(id_, JsonRpcCode.INTERNAL_ERROR)
        return encode_result(id_, encoded)
