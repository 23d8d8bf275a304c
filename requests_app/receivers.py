"""What the requests app does when the apps below it announce a change: the receivers only hand
over to the service."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from accounts.signals import memberships_changed
from requests_app import services


@receiver(memberships_changed, dispatch_uid="requests-revoke-on-memberships-changed")
def revoke_access_on_memberships_changed(
    sender: Any, memberships: list[tuple[int, int]], actor: Any, via: str, **kwargs: Any
) -> None:
    # Sent inside the transaction that changed them: the ending commits, or rolls back, with it.
    services.access_requests_revoke_for_memberships(memberships=memberships, actor=actor, via=via)
