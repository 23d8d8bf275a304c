"""The CLI proxy's forwards on record: each one's row and ``forward.opened`` before a byte passes,
its heartbeat while open, and its one ``forward.closed``, written by whoever ends the row first:
its web process, or the orphan sweep once that process is gone (``terminal.sweeps``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from requests_app.models import Grant
from requests_app.services.grant_log import grant_logbook_append
from terminal.models import ProxyForward, heartbeat_cutoff, heartbeat_silent_since


def forward_target(host: str, port: int) -> str:
    """``host:port`` as the Logbook spells a forward's target (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def proxy_forward_open(*, grant: Grant, user: User, host: str, port: int) -> int:
    """Put a forward on record as it opens: its row and ``forward.opened`` in one transaction;
    returns the row's id, which its heartbeat and its end name."""
    with transaction.atomic():
        forward = ProxyForward.objects.create(
            grant=grant, user=user, host=host[:255], port=port, heartbeat_at=timezone.now()
        )
        grant_logbook_append(
            grant,
            "forward.opened",
            {"client": "cli", "forward": forward.pk, "target": forward_target(host, port), "host": host[:255],
             "port": port},
            actor=user,
        )  # fmt: skip
    return forward.pk


def proxy_forwards_heartbeat(*, forward_ids: Sequence[int]) -> int:
    """The web process still serves these forwards."""
    if not forward_ids:
        return 0
    return ProxyForward.objects.filter(pk__in=list(forward_ids), ended_at__isnull=True).update(
        heartbeat_at=timezone.now()
    )


def proxy_forward_end(
    *,
    forward_id: int | None,
    grant: Grant,
    user: User,
    host: str,
    detail: dict[str, object],
    by_sweep: bool = False,
    now: datetime | None = None,
) -> bool:
    """End the forward's row and write its ``forward.closed`` (``detail``); returns whether this ended it.

    The sweep (``by_sweep``) writes nothing for a row ended already, or heard from again since it
    was listed (the UPDATE's condition, read again on the row it locks). Its web process always writes
    its own, with its bytes: should the sweep have taken it for dead first (its heartbeat could not
    be written for a while), the entry says so (``"after_sweep": true``) rather than lose them."""
    with transaction.atomic():
        ended = True
        if forward_id is not None:
            still_open = ProxyForward.objects.filter(pk=forward_id, ended_at__isnull=True)
            if by_sweep:
                still_open = still_open.filter(heartbeat_silent_since(heartbeat_cutoff(now)))
            ended = bool(still_open.update(ended_at=now or timezone.now()))
            if not ended and by_sweep:
                return False
            detail = {**detail, "forward": forward_id, **({} if ended else {"after_sweep": True})}
        grant_logbook_append(grant, "forward.closed", {"host": host[:255], **detail}, actor=user)
    return ended
