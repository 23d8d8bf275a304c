"""`passport proxy` through the portal's recording SSH proxy: stdin/stdout <-> one WebSocket.

ssh runs ``passport proxy REQUEST INSTANCE`` as its ProxyCommand; this opens
``/ws/cli/requests/REQUEST/grants/INSTANCE/ssh/`` on the portal (wss when the portal is https)
with the CLI's bearer token, and copies stdin to binary frames and binary frames to stdout: the
portal is the SSH server, which relays to the instance and records the session. Text frames are
the portal's control messages: ``refused`` (before anything else) and ``closed`` (before the
portal ends the connection: the request ended, an approver ended it); their reason is printed on
one line ending in ``\\r\\n`` (ssh may have the terminal in raw mode) with every control character
escaped, and the exit status says what happened. Close code 4409 means the account's CLI
sessions are direct: the caller falls back to the Session Manager data channel (as it does when the
portal has no such route: HTTP 404, an older portal; the portal still decides whether it allows that).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from passport_cli.client import Portal
from passport_cli.display import PORTAL_TEXT_LIMIT, printable
from passport_cli.errors import CliError, Exit
from passport_cli.stdio import stdio_streams

READ_SIZE = 32 * 1024
CLOSE_DIRECT = 4409
# Close code -> exit status (the portal's codes: terminal/proxy/auth.py).
EXIT_FOR_CLOSE = {
    4000: Exit.ACCESS_ENDED,
    4401: Exit.AUTH,
    4402: Exit.REFUSED,
    4403: Exit.REFUSED,
    4404: Exit.NOT_FOUND,
    4406: Exit.REFUSED,
    4410: Exit.REFUSED,
    4429: Exit.REFUSED,
}


class UseDirect(Exception):
    """The account's CLI sessions are direct: use the Session Manager data channel instead."""


def proxy_url(base_url: str, request_id: int, instance_id: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/ws/cli/requests/{int(request_id)}/grants/{quote(instance_id, safe='')}/ssh/"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


# Set by `passport connect` for the ssh it runs: the proxy leaves the reason in this file, and connect
# prints it once ssh has given the terminal back (instead of a line in the middle of ssh's raw mode and
# another from connect).
REASON_FILE_ENV = "PASSPORT_PROXY_REASON_FILE"


def say(reason: object, exit_code: int = Exit.ERROR) -> None:
    """One line on stderr, ending in CR LF (ssh may hold the terminal raw), nothing from the portal unescaped.

    Under `passport connect`, the line and the exit status go to connect's file instead.
    """
    line = printable(reason, limit=PORTAL_TEXT_LIMIT)
    with contextlib.suppress(OSError):
        reason_file = os.environ.get(REASON_FILE_ENV)
        if reason_file:
            with open(reason_file, "w", encoding="utf-8") as out:
                out.write(f"{int(exit_code)}\n{line}")
            return
        sys.stderr.write(f"passport: {line}\r\n")
        sys.stderr.flush()


def read_reason(path: str) -> tuple[int, str] | None:
    """What the proxy left in ``REASON_FILE_ENV``'s file: (exit status, escaped line), or None."""
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="utf-8") as found:
            code, _, line = found.read().partition("\n")
        if line:
            return int(code), printable(line)
    return None


async def _carry(socket: Any, first: bytes, note: Callable[[str], None]) -> None:
    """Copy stdin to binary frames and binary frames (``first`` the first) to stdout until either side ends."""
    from websockets.exceptions import ConnectionClosed

    reader, writer = await stdio_streams()

    async def upward() -> None:
        while data := await reader.read(READ_SIZE):
            await socket.send(data)
        await socket.close()  # ssh closed its side: the connection is over

    async def downward() -> None:
        writer.write(first)
        await writer.drain()
        with contextlib.suppress(ConnectionClosed):
            async for message in socket:
                if isinstance(message, bytes):
                    writer.write(message)
                    await writer.drain()
                else:
                    note(message)

    up = asyncio.create_task(upward())
    try:
        await downward()
    finally:
        up.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
            await up
        with contextlib.suppress(OSError):
            writer.close()


async def _relay(url: str, authorization: str) -> int:
    from websockets.exceptions import ConnectionClosed

    from ssmchannel.redirects import connect_within_origin

    control: dict[str, str] = {}

    def note(message: str) -> None:
        with contextlib.suppress(ValueError, AttributeError, KeyError):
            parsed = json.loads(message)
            if parsed.get("type") in ("closed", "refused"):
                control[str(parsed["type"])] = str(parsed.get("reason", ""))

    # The bearer token goes in a header: a redirect is followed only within the portal's origin.
    async with connect_within_origin(
        url, additional_headers={"Authorization": authorization}, max_size=None, compression=None, open_timeout=30
    ) as socket:
        # The SSH server speaks first (its version line); a refusal is a text frame instead. stdin and
        # stdout are taken only once the portal carries the connection: on a refusal the direct path
        # (4409) still has them.
        try:
            first = await socket.recv()
        except ConnectionClosed:
            first = ""
        if isinstance(first, str):
            note(first)
            with contextlib.suppress(ConnectionClosed):
                async for message in socket:
                    if isinstance(message, str):
                        note(message)
        else:
            await _carry(socket, first, note)
    code = socket.close_code or 1000
    if code == CLOSE_DIRECT:
        raise UseDirect
    reason = control.get("refused") or control.get("closed")
    if reason is not None or code >= 4000:
        exit_code = int(EXIT_FOR_CLOSE.get(code, Exit.ERROR))
        say(reason or f"the portal closed the connection (code {code})", exit_code)
        return exit_code
    return Exit.OK


def run_recorded_proxy(portal: Portal, request_id: int, instance_id: str) -> int:
    """Carry ssh's connection through the portal's proxy; raises UseDirect on the 4409 refusal."""
    from websockets.exceptions import InvalidStatus, SecurityError, WebSocketException

    url = proxy_url(portal.base_url, request_id, instance_id)
    authorization = str(portal.session.headers.get("Authorization", ""))
    try:
        return asyncio.run(_relay(url, authorization))
    except UseDirect:
        raise
    except InvalidStatus as error:
        status = error.response.status_code
        if status == HTTPStatus.NOT_FOUND:
            # A portal without the proxy (an older one): the data channel, which such a portal decides on.
            raise UseDirect from error
        raise CliError(f"The portal refused the SSH proxy connection (HTTP {status}).", Exit.REFUSED) from error
    except SecurityError as error:
        raise CliError(
            f"The portal's SSH proxy at {printable(portal.base_url)} answered with a redirect that is not followed: "
            f"{printable(error)}",
            Exit.REFUSED,
        ) from error
    except (OSError, WebSocketException, TimeoutError) as error:
        raise CliError(
            f"cannot reach the portal's SSH proxy at {printable(portal.base_url)}: {printable(error)}", Exit.UNREACHABLE
        ) from error
