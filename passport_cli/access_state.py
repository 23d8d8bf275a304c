"""Whether the access a session rides on still holds, as the portal says now: for `connect` and
`forward`, which tell the person why their session or forward ended (exit 7; exit 3 when the
portal no longer takes their CLI sign-in)."""

from __future__ import annotations

from typing import Any

from passport_cli.client import Portal
from passport_cli.display import printable
from passport_cli.errors import CliError, Exit

# What the browser's terminal says in these cases (terminal.services.END_MESSAGES), for a session.
_ENDED_MESSAGES = {
    "completed": "The access request was completed; this session is closed.",
    "expired": "The access request expired; this session is closed.",
    "failed": "The access request was ended; this session is closed.",
    "revoked": "You are no longer an Admin of the account: the access was revoked; this session is closed.",
}


class SignInEnded(str):
    """Why a session or forward ended when it is because the CLI sign-in it rode on no longer works
    (revoked, expired): the command exits with ``Exit.AUTH``, not ``Exit.ACCESS_ENDED``."""

    __slots__ = ()


SIGN_IN_ENDED = SignInEnded(
    "Your CLI sign-in is no longer valid (revoked, or expired): the access it opened has ended and this "
    "session is closed. Sign in again with `passport auth login`."
)


def ended_exit(reason: str) -> Exit:
    """The exit code for a session or forward that ended for ``reason``."""
    return Exit.AUTH if isinstance(reason, SignInEnded) else Exit.ACCESS_ENDED


def access_ended_reason(portal: Portal, request_id: int) -> str | None:
    """Why the session closed, when it is because the request is no longer active or the sign-in no
    longer works; None otherwise."""
    item = _request_now(portal, request_id)
    if isinstance(item, SignInEnded):
        return item
    return _ended_reason(item) if item is not None else None


def forward_ended_reason(portal: Portal, request_id: int, remote_port: int) -> str | None:
    """Why a port forward ends: the request is no longer active, or an administrator took its port
    off the account or made its sessions moderated (the portal ends the forward's session then, and
    would refuse the next one: a listener left open would only fail every connection); None while it
    may go on."""
    from passport_cli.tunnel import check_forward_port

    item = _request_now(portal, request_id)
    if item is None or isinstance(item, SignInEnded):
        return item
    ended = _ended_reason(item)
    if ended is not None:
        return ended
    try:
        check_forward_port(item, remote_port)
    except CliError as refused:
        return f"{refused} This forward is closed."
    return None


def _request_now(portal: Portal, request_id: int) -> dict[str, Any] | SignInEnded | None:
    """The request as the portal has it now; None when it cannot say (asked again later), and
    ``SIGN_IN_ENDED`` when it refuses the sign-in (401, or 403 "Not signed in"): revoked or expired,
    that ends the access this session rides on (the portal ends the sessions a revoked sign-in
    started), so it must stop serving rather than ask again."""
    try:
        return portal.get_object(f"/api/requests/{int(request_id)}/")
    except CliError as error:  # an answer it cannot read too (``client.unreadable``): asked again later
        return SIGN_IN_ENDED if error.code == Exit.AUTH else None


def _ended_reason(item: dict[str, Any]) -> str | None:
    if item.get("status") in ("active", None):
        return None
    known = _ENDED_MESSAGES.get(str(item.get("end_reason") or item.get("status")))
    label = printable(item.get("status_label") or item.get("status"))
    return known or f"The access request is no longer active ({label}); this session is closed."
