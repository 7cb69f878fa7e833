"""Real ASGI servers on 127.0.0.1 (port 0) inside the test's event loop.

asyncio: uvicorn; trio: hypercorn (uvicorn has no trio support). Each server's request
tasks are its own (spawned by the server), so no deadline or trace context leaks from
the test's task into a service except through HTTP.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio


def backend_name(anyio_backend: Any) -> str:
    """The backend's name from the ``anyio_backend`` fixture value."""
    return anyio_backend if isinstance(anyio_backend, str) else anyio_backend[0]


@asynccontextmanager
async def running(app: Callable[..., Any], backend: str) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:<free port>; yield its base URL; shut it down cleanly."""
    server = "uvicorn" if backend == "asyncio" else "hypercorn"
    if server == "uvicorn":
        async with _uvicorn(app) as url:
            yield url
    else:
        async with _hypercorn(app, backend) as url:
            yield url


class _Uvicorn:
    """uvicorn's Server, polling for exit every 10 ms instead of 100 ms (faster tests)."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            async def main_loop(self) -> None:
                while not self.should_exit:
                    await anyio.sleep(0.01)

        return Server(config)


@asynccontextmanager
async def _uvicorn(app: Callable[..., Any]) -> AsyncIterator[str]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = _Uvicorn(config)
    async with anyio.create_task_group() as group:
        # _serve (uvicorn >= 0.29) is serve without installing signal handlers
        group.start_soon(getattr(server, "_serve", server.serve), [sock])
        while not server.started:
            await anyio.sleep(0.005)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


@asynccontextmanager
async def _hypercorn(app: Callable[..., Any], backend: str) -> AsyncIterator[str]:
    from hypercorn.config import Config

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None
    config.accesslog = None
    config.graceful_timeout = 2
    stop = anyio.Event()
    if backend == "trio":
        import trio
        from hypercorn.trio import serve

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: serve(
                    app, config, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            try:
                yield binds[0]
            finally:
                stop.set()
    else:
        raise NotImplementedError("hypercorn is used on trio only")


def http_client(**kwargs: Any) -> Any:
    """An ``httpx.AsyncClient`` for plain-HTTP tests (``verify=False`` skips loading CA
    certificates, 20–100 ms per client)."""
    import httpx

    kwargs.setdefault("timeout", 10)
    return httpx.AsyncClient(verify=False, **kwargs)
