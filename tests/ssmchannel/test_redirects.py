"""A redirect answering the data channel's WebSocket is followed only within its origin.

The channel's token goes in its first message, after the handshake, so websockets stripping
credential headers on a cross-origin redirect does nothing for it: the channel must not follow
one at all, or whoever the Location names receives the token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import SecurityError
from websockets.http11 import Request, Response

from ssmchannel.channel import DataChannel
from ssmchannel.errors import ChannelClosedError
from tests.ssmchannel.aio import async_test


class Far:
    """A server that records what reaches it: request headers and the first message."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.messages: list[str | bytes] = []

    async def handler(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        self.headers.append({key.lower(): value for key, value in websocket.request.headers.raw_items()})
        with contextlib.suppress(Exception):  # nothing came: that is what the tests look at
            self.messages.append(await asyncio.wait_for(websocket.recv(), 5))
        await websocket.close()


def redirecting_to(location: str):  # type: ignore[no-untyped-def]
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/moved"):
            return None  # the redirect's own target, served here
        response = connection.respond(HTTPStatus.FOUND, "moved\n")
        response.headers["Location"] = location
        return response

    return process_request


@asynccontextmanager
async def running(handler, **options) -> AsyncIterator[tuple[Server, int]]:  # type: ignore[no-untyped-def]
    server = await serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None, **options)
    try:
        yield server, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@async_test
async def test_the_channel_never_takes_its_token_to_another_origin() -> None:
    elsewhere = Far()
    async with running(elsewhere.handler) as (_, far_port):
        redirector = Far()
        async with running(redirector.handler, process_request=redirecting_to(f"ws://127.0.0.1:{far_port}/x")) as (
            _,
            port,
        ):
            with pytest.raises(ChannelClosedError) as refused:
                await DataChannel.connect(f"ws://127.0.0.1:{port}/", "secret-token", handshake_timeout=2)
            await asyncio.sleep(0.2)
    assert not any(b"secret-token" in str(message).encode() for message in elsewhere.messages)
    assert elsewhere.headers == []
    assert "another origin" in str(refused.value)


@async_test
async def test_a_redirect_within_the_origin_is_followed_with_the_headers() -> None:
    from ssmchannel.redirects import connect_within_origin

    here = Far()
    async with running(here.handler, process_request=redirecting_to("/moved/there")) as (_, port):
        async with connect_within_origin(f"ws://127.0.0.1:{port}/", additional_headers={"Authorization": "Bearer t"}):
            pass
        await asyncio.sleep(0.2)
    assert [headers.get("authorization") for headers in here.headers] == ["Bearer t"]


@async_test
async def test_another_port_or_scheme_is_another_origin() -> None:
    from ssmchannel.redirects import connect_within_origin

    far = Far()
    async with running(far.handler) as (_, far_port):
        for location in (f"ws://127.0.0.1:{far_port}/moved", f"ws://localhost:{far_port}/moved"):
            async with running(far.handler, process_request=redirecting_to(location)) as (_, port):
                with pytest.raises(SecurityError):
                    await connect_within_origin(f"ws://127.0.0.1:{port}/", additional_headers={"Authorization": "x"})
    assert far.headers == []
