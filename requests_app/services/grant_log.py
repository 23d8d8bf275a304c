"""Logbook entries about one grant: its account, request and instance filled in once."""

from __future__ import annotations

from typing import Any

from accounts.models import User
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
