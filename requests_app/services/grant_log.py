"""Logbook entries about one grant: its account, request and instance filled in once."""

from __future__ import annotations

from typing import Any

from accounts.models import User
from audit.refusals import logbook_append_aggregated
from audit.services import logbook_append
from requests_app.models import Grant


def grant_logbook_append(grant: Grant, action: str, detail: dict[str, Any], *, actor: User | None = None) -> None:
    """Record ``action`` on ``grant``; ``actor`` None means the workers did it, not a person."""
    logbook_append(
        action=action,
        actor=actor,
        account=grant.request.account,
        request_id=grant.request_id,
        instance_ids=[grant.instance.instance_id],
        detail=detail,
    )


def grant_refusal_append(grant: Grant, action: str, *, user: User, refusal_key: str, detail: dict[str, Any]) -> None:
    """Record a refusal of ``user`` on ``grant`` once per refusal window, and each same one after it
    (the same ``refusal_key``: keep the grant in it) only as a count (``audit.refusals``): a page
    reloading, a script or a ControlMaster asking again adds no entry each time. The entry's detail
    names its ``refusal_key``."""
    logbook_append_aggregated(
        action=action,
        source=f"user:{user.pk}",
        reason=refusal_key,
        actor=user,
        account=grant.request.account,
        request_id=grant.request_id,
        instance_ids=[grant.instance.instance_id],
        detail={**detail, "refusal_key": refusal_key},
        capped=False,
    )
