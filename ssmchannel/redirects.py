"""websockets' ``connect``, following a redirect only within the origin it was given.

websockets follows up to ten redirects anywhere (wss never down to ws), and since 16.1 strips
Authorization, Cookie and Proxy-Authorization when one leaves the origin. That does not cover
the data channel, whose token goes in its first message once the WebSocket is open: whoever a
redirect named would receive it. Neither the Session Manager endpoint nor the portal has a reason
to send a WebSocket elsewhere, so a redirect to another scheme, host or port is refused.
"""

from __future__ import annotations

from websockets.asyncio.client import connect
from websockets.exceptions import SecurityError
from websockets.uri import parse_uri


def _origin(uri: str) -> tuple[bool, str, int]:
    parsed = parse_uri(uri)
    return parsed.secure, parsed.host.lower(), parsed.port


# Lower case, as websockets' connect: awaited or used with ``async with`` the same way.
class connect_within_origin(connect):
    """``websockets.asyncio.client.connect`` that refuses a redirect to another origin (SecurityError)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        target = super().process_redirect(exc)
        # self.uri is the URI of this hop: each redirect followed stayed within the first one's origin.
        if isinstance(target, str) and _origin(target) != _origin(self.uri):
            # The Location is the far end's text: it stays out of the message.
            return SecurityError("refused a redirect to another origin")
        return target
