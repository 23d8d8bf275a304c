"""What an open CLI connection (terminal.proxy.session) does periodically, as long as it is open.

Its slot counts under the cap as long as the connection is open, not only while it opens: with a
shell, with only forwards (``ssh -N -L``, ``-W``, or a shell that ended while forwards stay), or
idle (a ControlMaster between commands); touched every ``SLOT_TOUCH_SECONDS``. Its open forwards
are checked against what is in force every ``PASSPORT_PROXY_FORWARDS_RECHECK_SECONDS``: an admin's
change normally arrives at once as ``cli.forwarding_changed``, but that message is lost when the
channel layer is down at the save, and a change made without the model's signal sends none. A
connection with no open forward reads nothing. Its request is read every
``PASSPORT_PROXY_REQUEST_CHECK_SECONDS``: the ending's ``terminal.close`` may be lost too, and a
connection with no shell running has nothing the ending's removal would end first; its CLI token
too (a revocation whose message was lost, an end moved into the past), and its instance's region
(still among its account's; the message of an admin's taking it off may be lost). And it wakes at the
token's end, and ends the connection there, and at the request's end as last read (each request round
reads it again, so an extension moves it), where the request round ends it: not up to a round later.
While it has forwards open, it writes their heartbeat
every ``FORWARD_HEARTBEAT_SECONDS`` (``terminal.models.ProxyForward``): the orphan sweep ends on
record those of a process that died.

Each check that cannot read what it needs (the database, Redis) is tried again at its next round.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from terminal import rounds
from terminal.proxy.auth import CLOSE_UNAUTHENTICATED
from terminal.services import SIGN_IN_EXPIRED_MESSAGE
from terminal.services.forwards import proxy_forwards_heartbeat
from terminal.slots import SLOT_TOUCH_SECONDS, session_slot_touch
from terminal.threads import in_db_thread

if TYPE_CHECKING:
    from terminal.proxy.session import ProxyConnection

logger = logging.getLogger(__name__)

# How often an open forward's heartbeat is written: well within the stale limit the sweep reads
# (``PASSPORT_RECORDING_STALE_SECONDS``, as for terminals).
FORWARD_HEARTBEAT_SECONDS = 5
# How soon the request is looked at again once its end has come and it was not yet over.
END_RECHECK_SECONDS = 0.5


async def connection_upkeep(connection: ProxyConnection) -> None:
    """The periodic checks of ``connection`` until its ending begins (or one of them ends it)."""
    loop = asyncio.get_running_loop()
    recheck_every = max(1, int(settings.PASSPORT_PROXY_FORWARDS_RECHECK_SECONDS))
    request_every = max(1, int(settings.PASSPORT_PROXY_REQUEST_CHECK_SECONDS))
    now = loop.time()
    next_touch, next_check, next_request = now + SLOT_TOUCH_SECONDS, now + recheck_every, now + request_every
    next_beat = now + FORWARD_HEARTBEAT_SECONDS
    request_end = await _request_end_on(loop, connection)
    while not connection.ending:
        wake = min(next_touch, next_check, next_request, next_beat, request_end, connection.sign_in.ends_on(loop))
        await asyncio.sleep(max(0.0, wake - loop.time()))
        if connection.ending or _end_if_sign_in_over(connection):
            return
        if loop.time() >= next_request or loop.time() >= request_end:
            next_request = loop.time() + request_every
            if (
                await _end_if_request_over(connection)
                or await _end_if_sign_in_gone(connection)
                or await _end_if_region_off(connection)
            ):
                return
            request_end = await _request_end_on(loop, connection)
        if loop.time() >= next_check:
            next_check = loop.time() + recheck_every
            try:
                await connection.withdraw_forwards(fail_closed=False)
            except Exception:
                # The slot must still be touched: a failed round is tried again at the next.
                logger.warning("CLI proxy on grant %s: forwards not rechecked", connection.grant.pk, exc_info=True)
        if loop.time() >= next_beat:
            next_beat = loop.time() + FORWARD_HEARTBEAT_SECONDS
            await _forwards_heartbeat(connection)
        if loop.time() >= next_touch:
            next_touch = loop.time() + SLOT_TOUCH_SECONDS
            await _touch_slot(connection)


async def _request_end_on(loop: asyncio.AbstractEventLoop, connection: ProxyConnection) -> float:
    """When, on the loop's clock, the connection's request ends as things stand: infinity when it has
    no end or cannot be read (the request rounds still catch it). An end reached that the request
    round did not yet see as over (the clocks a moment apart) is looked at again
    ``END_RECHECK_SECONDS`` later."""
    try:
        expires_at = await rounds.request_expires_at(connection.grant.request_id)
    except Exception:
        logger.warning("CLI proxy on grant %s: the request's end not read", connection.grant.pk, exc_info=True)
        return math.inf
    if expires_at is None:
        return math.inf
    return loop.time() + max(END_RECHECK_SECONDS, (expires_at - timezone.now()).total_seconds())


async def _end_if_request_over(connection: ProxyConnection) -> bool:
    """End the connection, with the request's own reason, once the request is no longer active or
    past its end time (with every other connection of this process, in one query:
    terminal.rounds); True if it did. Unreadable: read again at the next round."""
    try:
        ended = await rounds.request_ended(connection.grant.request_id)
    except Exception:
        logger.warning("CLI proxy on grant %s: the request's state not read", connection.grant.pk, exc_info=True)
        return False
    if ended is None:
        return False
    connection.end_for_request(ended)
    return True


async def _end_if_region_off(connection: ProxyConnection) -> bool:
    """End the connection, on record, once its instance's region is no longer among its account's
    (with every other connection of this process, in one query: terminal.rounds); True if it did.
    Unreadable: read again at the next round."""
    grant = connection.grant
    refused = await rounds.region_refusal(grant.pk, who="CLI proxy")
    if refused is None:
        return False
    connection.region_off(grant_ids=[grant.pk], region=grant.instance.region, reason=refused)
    return True


def _end_if_sign_in_over(connection: ProxyConnection) -> bool:
    """End the connection once the CLI token it signed in with has reached its end; True if it did."""
    if not connection.sign_in.over():
        return False
    connection.end_soon(SIGN_IN_EXPIRED_MESSAGE, code=CLOSE_UNAUTHENTICATED)
    return True


async def _end_if_sign_in_gone(connection: ProxyConnection) -> bool:
    """End the connection if its token was revoked (the revocation's message lost) or its end
    moved into the past (``SignIn.why_over``); True if it did. Unreadable: read again at the next round."""
    try:
        over = await connection.sign_in.why_over()
    except Exception:
        logger.warning("CLI proxy on grant %s: its sign-in not read", connection.grant.pk, exc_info=True)
        return False
    if over is None:
        return False
    connection.end_soon(over, code=CLOSE_UNAUTHENTICATED)
    return True


async def _forwards_heartbeat(connection: ProxyConnection) -> None:
    forward_ids = [forward.record_id for forward in connection.forwards if forward.record_id is not None]
    if not forward_ids:
        return
    try:
        await in_db_thread(proxy_forwards_heartbeat)(forward_ids=forward_ids)
    except Exception:
        logger.warning("CLI proxy on grant %s: its forwards' heartbeat not written", connection.grant.pk, exc_info=True)


async def _touch_slot(connection: ProxyConnection) -> None:
    slot_id = connection.slot_id
    if connection.ending or slot_id is None:
        return
    try:
        await in_db_thread(session_slot_touch)(slot_id=slot_id)
    except Exception:
        logger.warning("CLI proxy on grant %s: its slot %s not touched", connection.grant.pk, slot_id, exc_info=True)
