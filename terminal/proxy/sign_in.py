"""The CLI sign-in (the bearer token) a proxy connection was opened with, and its end.

The gate (terminal.proxy.auth) reads the token at the handshake. The connection
(terminal.proxy.session) keeps its id and end: it ends at that time, opens no new channel after it,
and reads the token again at its periodic check, which sees a revocation whose message was lost (the
token's row is gone) or an end moved into the past.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from terminal import rounds
from terminal.services import SIGN_IN_EXPIRED_MESSAGE, SIGN_IN_REVOKED_MESSAGE


@dataclass
class SignIn:
    token_id: int | None = None
    ends_at: datetime | None = None

    def over(self) -> bool:
        """Whether the token has reached its end (the wall clock decides)."""
        return self.ends_at is not None and timezone.now() >= self.ends_at

    def ends_on(self, loop: asyncio.AbstractEventLoop) -> float:
        """The token's end on the loop's clock, to wake at: infinity for none."""
        if self.ends_at is None:
            return math.inf
        return loop.time() + (self.ends_at - timezone.now()).total_seconds()

    async def why_over(self) -> str | None:
        """Read the token again (with every other connection of this process, in one query:
        terminal.rounds): why the connection is to end (revoked, or past its end), or None while
        it is live. Raises when the token cannot be read."""
        if self.token_id is not None:
            ends_at = await rounds.sign_in_ends_at(self.token_id)
            if ends_at is None:
                return SIGN_IN_REVOKED_MESSAGE
            self.ends_at = ends_at
        return SIGN_IN_EXPIRED_MESSAGE if self.over() else None
