"""One GET through Django's ASGI handler (what daphne runs), no server: for the tests that count what a
request in flight holds (test_db_connections.py, and db_pool_probe.py in a process of its own)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.handlers.asgi import ASGIHandler

Sent = Callable[[dict[str, Any]], Awaitable[None]]


async def asgi_get(handler: ASGIHandler, path: str, *, sent: Sent | None = None) -> int:
    """``path`` asked once; its status code. ``sent`` is awaited with each message the handler sends (a
    client slow to read); the request's body is empty and the client never disconnects first."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8001),
    }
    messages: list[dict[str, Any]] = []
    received = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        try:
            return next(received)
        except StopIteration:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if sent is not None:
            await sent(message)

    await handler(scope, receive, send)
    return next(m["status"] for m in messages if m["type"] == "http.response.start")
