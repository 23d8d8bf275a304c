"""`passport proxy`'s WebSocket to the portal never follows a redirect to another origin.

It carries the CLI's bearer token in its Authorization header: a portal (or anything that can
answer for it) redirecting elsewhere must not hand the token over, nor open a connection there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http import HTTPStatus

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from passport_cli.client import Portal
from passport_cli.errors import CliError
from passport_cli.proxy_socket import run_recorded_proxy


@contextmanager
def server_thread(process_request=None) -> Iterator[tuple[int, list[dict[str, str]]]]:  # type: ignore[no-untyped-def]
    """A websockets server in its own thread and loop: its port and each request's headers."""
    seen: list[dict[str, str]] = []
    ready = threading.Event()
    state: dict[str, object] = {}

    async def handler(websocket: ServerConnection) -> None:
        assert websocket.request is not None
        seen.append({key.lower(): value for key, value in websocket.request.headers.raw_items()})
        await websocket.send('{"type": "refused", "reason": "test server"}')
        await websocket.close(4403)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        state["stop"] = lambda: loop.call_soon_threadsafe(stop.set_result, None)
        async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
            state["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await stop

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield int(state["port"]), seen  # type: ignore[call-overload]
    finally:
        state["stop"]()  # type: ignore[operator]
        thread.join(10)


def redirect_to(location: str):  # type: ignore[no-untyped-def]
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/moved"):
            return None
        response = connection.respond(HTTPStatus.TEMPORARY_REDIRECT, "")
        response.headers["Location"] = location
        return response

    return process_request


def test_a_redirect_to_another_origin_is_refused_and_gets_no_token() -> None:
    with ExitStack() as stack:
        far_port, far_seen = stack.enter_context(server_thread())
        port, _ = stack.enter_context(server_thread(redirect_to(f"ws://127.0.0.1:{far_port}/moved")))
        with pytest.raises(CliError, match="another origin"):
            run_recorded_proxy(Portal(f"http://127.0.0.1:{port}", token="secret-token"), 1, "i-0123456789abcdef0")
    assert far_seen == []


def test_a_redirect_within_the_portal_keeps_the_token() -> None:
    with server_thread(redirect_to("/moved/ssh/")) as (port, seen):
        exit_code = run_recorded_proxy(Portal(f"http://127.0.0.1:{port}", token="secret-token"), 1, "i-0")
    assert exit_code != 0  # the test server refuses, as the portal would
    assert [headers.get("authorization") for headers in seen] == ["Bearer secret-token"]
