"""Small ASGI applications that record what a service saw."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import anyio


@dataclass
class Probe:
    """ASGI app: records each request's headers and time left, then answers JSON.

    ``work`` seconds of (cancellable) work before answering; ``stream`` sends the answer
    in two parts with ``work`` between them (the response has started when it is cut).
    """

    work: float = 0.0
    stream: bool = False
    calls: int = 0
    finished: int = 0
    cancelled: int = 0
    time_left: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        self.calls += 1
        left = anyio.current_effective_deadline() - anyio.current_time()
        self.time_left.append(left)
        self.headers.append({k.decode(): v.decode("latin-1") for k, v in scope["headers"]})
        body = json.dumps({"time_left": None if math.isinf(left) else left}).encode()
        try:
            if self.stream:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"[", "more_body": True})
                await anyio.sleep(self.work)
                await send({"type": "http.response.body", "body": b"]", "more_body": False})
            else:
                await anyio.sleep(self.work)
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        self.finished += 1


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return
