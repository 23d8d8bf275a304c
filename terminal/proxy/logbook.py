"""What the CLI proxy writes in the Logbook besides its sessions (terminal.services writes those).

Every entry is linked to the grant's request, account and instance, like the terminal's (requests_app's
``grant_logbook_append``; a refusal through ``audit.refusals``, only counted when repeated). Values
from the client (hosts, paths, reasons) are stored as data: the Logbook keeps JSON, and its pages
escape what they show.
"""

from __future__ import annotations

import hashlib

from accounts.models import User
from requests_app.models import Grant
from requests_app.services.grant_log import grant_logbook_append, grant_refusal_append
from terminal.proxy.observers import Change
from terminal.services.forwards import forward_target, proxy_forward_end


def proxy_refused(*, grant: Grant, user: User, what: str, reason: str, key: str = "", **detail: object) -> None:
    """Something the client asked for and the proxy refused (``proxy.refused``).

    A client can ask again and again, on one connection or many (a loop, a ControlMaster's every
    command), so the same refusal of the same person on the same grant is written once per refusal
    window, with its detail and ``refusal_key``, and each one after it only counted under that key
    (``audit.refusals``; the window's summary entry gives the count). The same refusal: the same
    ``what`` and ``reason``, or ``key`` in the reason's stead when the reason names what was asked
    (a port: one entry for a scan of many)."""
    digest = hashlib.sha256((key or reason).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    refusal_key = f"{what[:24]}:{grant.pk}:{digest}"
    grant_refusal_append(
        grant,
        "proxy.refused",
        user=user,
        refusal_key=refusal_key,
        detail={"what": what, "reason": reason[:300], **detail},
    )


def proxy_forward_closed(
    *, grant: Grant, user: User, host: str, port: int, seconds: float, bytes_to_instance: int,
    bytes_from_instance: int, reason: str | None = None, forward_id: int | None = None,
) -> None:  # fmt: skip
    """One ``ssh -L`` connection through the proxy has ended (``forward.closed``): to the instance
    itself or to one of the request's destinations beyond it, as ``target`` (``host:port``) says;
    ``reason`` when Passport closed it (an admin took its target off the account, or the connection
    was ended: the request ended). Its row (``forward_id``, ``forward.opened``) ends with it, unless
    the sweep ended it first."""
    detail: dict[str, object] = {
        "client": "cli",
        "target": forward_target(host, port),
        "port": port,
        "duration_seconds": round(seconds, 3),
        "bytes_to_instance": bytes_to_instance,
        "bytes_from_instance": bytes_from_instance,
    }
    if reason is not None:
        detail["reason"] = reason[:300]
    proxy_forward_end(forward_id=forward_id, grant=grant, user=user, host=host, detail=detail)


def proxy_transfer(
    *,
    grant: Grant,
    user: User,
    terminal_session: int | None,
    protocol: str,
    path: str,
    direction: str,
    size: int,
    sha256: str,
    complete: bool,
) -> None:
    """A file went up or down through scp or sftp (``file.transferred``), as its observer saw it."""
    grant_logbook_append(
        grant,
        "file.transferred",
        {
            "client": "cli",
            "terminal_session": terminal_session,
            "protocol": protocol,
            "path": path[:4096],
            "direction": direction,
            "size": size,
            "sha256": sha256,
            "complete": complete,
        },
        actor=user,
    )


def proxy_unobserved(
    *,
    grant: Grant,
    user: User,
    terminal_session: int | None,
    protocol: str,
    reason: str,
    note: str,
    unrecorded_bytes_in: int,
    unrecorded_bytes_out: int,
) -> None:
    """A transfer observer gave up midway (``transfer.unobserved``): the rest of the channel is recorded,
    and the bytes before it were not (only the files it reported are on record)."""
    grant_logbook_append(
        grant,
        "transfer.unobserved",
        {
            "protocol": protocol,
            "reason": reason[:300],
            "unrecorded_bytes_in": unrecorded_bytes_in,
            "unrecorded_bytes_out": unrecorded_bytes_out,
            "note": note[:300],
            "client": "cli",
            "terminal_session": terminal_session,
        },
        actor=user,
    )


def proxy_file_changed(*, grant: Grant, user: User, terminal_session: int | None, change: Change) -> None:
    """A file removed, renamed, linked, made or its attributes set over sftp (``file.changed``). What
    changed comes first: the Logbook's list shows the first few fields."""
    detail: dict[str, object] = {"operation": change.operation, "path": change.path[:4096]}
    if change.target:
        detail["target"] = change.target[:4096]
    detail["status"] = change.status
    if change.attributes:
        detail["attributes"] = dict(change.attributes)
    if change.message:
        detail["message"] = change.message[:300]
    detail.update(client="cli", terminal_session=terminal_session, protocol="sftp")
    grant_logbook_append(grant, "file.changed", detail, actor=user)
