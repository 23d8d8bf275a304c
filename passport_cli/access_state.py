"""Whether the access a session rides on still holds, as the portal says now: for `connect` and
`forward`, which tell the person why their session or forward ended (exit 7)."""

from __future__ import annotations

from typing import Any

from passport_cli.client import Portal
from passport_cli.display import printable
from passport_cli.errors import CliError

# What the browser's terminal says in these cases (terminal.services.END_MESSAGES), for a session.
_ENDED_MESSAGES = {
    "completed": "The access request was completed; this session is closed.",
    "expired": "The access request expired; this session is closed.",
    "failed": "The access request was ended; this session is closed.",
    "revoked": "You are no longer an Admin of the account: the access was revoked; this session is closed.",
}


def access_ended_reason(portal: Portal, request_id: int) -> str | None:
    """Why the session closed, when it is because the request is no longer active; None otherwise."""
    item = _request_now(portal, request_id)
    return _ended_reason(item) if item is not None else None


def forward_ended_reason(portal: Portal, request_id: int, remote_port: int) -> str | None:
    """Why a port forward ends: the request is no longer active, or an administrator took its port
    off the account or made its sessions moderated (the portal ends the forward's session then, and
    would refuse the next one: a listener left open would only fail every connection); None while it
    may go on."""
    from passport_cli.tunnel import check_forward_port

    item = _request_now(portal, request_id)
    if item is None:
        return None
    ended = _ended_reason(item)
    if ended is not None:
        return ended
    try:
        check_forward_port(item, remote_port)
    except CliError as refused:
        return f"{refused} This forward is closed."
    return None


def _request_now(portal: Portal, request_id: int) -> dict[str, Any] | None:
    """The request as the portal has it now; None when it cannot say (asked again later)."""
    try:
        item = portal.get(f"/api/requests/{int(request_id)}/")
    except CliError:
        return None
    return item if isinstance(item, dict) else None


def _ended_reason(item: dict[str, Any]) -> str | None:
    if item.get("status") in ("active", None):
        return None
    known = _ENDED_MESSAGES.get(str(item.get("end_reason") or item.get("status")))
    label = printable(item.get("status_label") or item.get("status"))
    return known or f"The access request is no longer active ({label}); this session is closed."
