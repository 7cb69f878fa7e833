"""The JSON-RPC 2.0 wire format shared by the client and the server: decode, encode, check.

JSON is RFC 8259's, both ways: ``NaN``, ``Infinity`` and ``-Infinity``, which Python's
``json`` reads and writes by default, are not JSON, so they are refused when parsing (as
are numbers too large for a float) and never written.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from .._errors import ValidationError
from ._errors import JsonRpcCode, JsonRpcError, JsonRpcProtocolError

__all__ = [
    "NO_ID",
    "answer_id",
    "call_id",
    "check_method",
    "decode",
    "encode_error",
    "encode_result",
    "error_object",
    "result_of",
    "valid_call",
]

NO_ID: Final = object()
"""The ``id`` of a notification (no ``id`` member), and of an answer without one."""

_MESSAGES: Final = {
    JsonRpcCode.PARSE_ERROR: "Parse error",
    JsonRpcCode.INVALID_REQUEST: "Invalid Request",
    JsonRpcCode.METHOD_NOT_FOUND: "Method not found",
    JsonRpcCode.INVALID_PARAMS: "Invalid params",
    JsonRpcCode.INTERNAL_ERROR: "Internal error",
    JsonRpcCode.DEADLINE_EXCEEDED: "Deadline exceeded",
}


def check_method(method: object, field: str = "method") -> str:
    """``method`` if it is a usable JSON-RPC method name (``rpc.*`` is reserved)."""
    if not isinstance(method, str) or not method or method.startswith("rpc."):
        raise ValidationError(
            f"a JSON-RPC method must be a non-empty string not starting with 'rpc.'; "
            f"got {method!r}",
            field=field,
            value=method,
        )
    return method


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400 parses as infinity, which JSON cannot write back
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def decode(raw: bytes | str) -> Any:
    """Parse JSON strictly: ``NaN``, ``Infinity``, ``-Infinity`` and numbers too large for
    a float are invalid.

    Raises:
        ValueError: not JSON.
        RecursionError: absurdly deep nesting.
    """
    return json.loads(raw, parse_constant=_not_json, parse_float=_finite)


# -- server side: encoding -------------------------------------------------------------


def encode_result(id_: Any, result_json: str) -> str:
    """A success response around an already encoded result."""
    return f'{{"jsonrpc":"2.0","result":{result_json},"id":{json.dumps(id_, allow_nan=False)}}}'


def encode_error(id_: Any, error: JsonRpcError | JsonRpcCode, data: Any = None) -> str:
    """An error response: a raised :class:`JsonRpcError`, or a standard code.

    Raises:
        ValueError, TypeError, RecursionError: the error's data JSON cannot encode.
    """
    if isinstance(error, JsonRpcCode):
        error = JsonRpcError(error, _MESSAGES[error], data)
    body = json.dumps(error.to_object(), separators=(",", ":"), allow_nan=False)
    return f'{{"jsonrpc":"2.0","error":{body},"id":{json.dumps(id_, allow_nan=False)}}}'


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int | float) and not isinstance(value, bool))
    )


def call_id(call: Any) -> Any:
    """The id of a request object: :data:`NO_ID` for a notification, ``None`` if unusable."""
    if isinstance(call, dict):
        found = call.get("id", NO_ID)
        return found if found is NO_ID or _valid_id(found) else None
    return None


def answer_id(call: Any) -> Any:
    """The id to answer an invalid request object with (``None`` when unknown)."""
    found = call_id(call)
    return None if found is NO_ID else found


def valid_call(call: Any) -> tuple[str, Any, Any] | None:
    """``(method, params, id)`` of a well-formed request object, else ``None``."""
    if not isinstance(call, dict) or call.get("jsonrpc") != "2.0":
        return None
    method, params, id_ = call.get("method"), call.get("params"), call.get("id", NO_ID)
    if (
        not isinstance(method, str)
        or not (params is None or isinstance(params, list | dict))
        or not (id_ is NO_ID or _valid_id(id_))
    ):
        return None
    return method, params, id_


# -- client side: checking answers -----------------------------------------------------


def _same_id(received: Any, sent: int | None) -> bool:
    return isinstance(received, int) and not isinstance(received, bool) and received == sent


def error_object(message: Any, id_: int | None) -> tuple[int, str, Any] | None:
    """(code, message, data) of a well-formed error response to call ``id_`` (or to an
    unidentifiable call: ``id`` null), else ``None``."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or "result" in message:
        return None
    error, rid = message.get("error"), message.get("id", NO_ID)
    if not isinstance(error, dict) or not (rid is None or _same_id(rid, id_)):
        return None
    code, text = error.get("code"), error.get("message")
    if isinstance(code, bool) or not isinstance(code, int) or not isinstance(text, str):
        return None
    return code, text, error.get("data")


def result_of(message: Any, id_: int | None, where: dict[str, Any]) -> Any:
    """The ``result`` of a success response to call ``id_``.

    Raises:
        JsonRpcProtocolError: anything else (``message`` is :data:`NO_ID` if not JSON).
    """
    if message is NO_ID:
        raise JsonRpcProtocolError("the answer is not JSON", **where)
    if not isinstance(message, dict):
        kind = "an array (a batch answer?)" if isinstance(message, list) else "not an object"
        raise JsonRpcProtocolError(f"the answer is {kind}, not a JSON-RPC response", **where)
    if message.get("jsonrpc") != "2.0":
        raise JsonRpcProtocolError(
            f"the answer's jsonrpc member is {message.get('jsonrpc')!r}, not '2.0'", **where
        )
    if "error" in message:
        raise JsonRpcProtocolError(
            "the answer has both 'result' and 'error'"
            if "result" in message
            else f"malformed or foreign error object: {json.dumps(message)[:200]}",
            **where,
        )
    if "result" not in message:
        raise JsonRpcProtocolError("the answer has neither 'result' nor 'error'", **where)
    received = message.get("id", NO_ID)
    if not _same_id(received, id_):
        shown = "none" if received is NO_ID else repr(received)
        raise JsonRpcProtocolError(f"id mismatch: sent {id_}, the answer has {shown}", **where)
    return message["result"]
