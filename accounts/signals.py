"""Local sign-ins (password, password + TOTP) go to the Logbook; and what accounts announce to
the apps above them (which it must not import).

allauth's own signal is used, not Django's: it fires only when a person signs in through
the sign-in page, not on every `login()` (tests' force_login, SAML, which records itself).
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_logged_in
from django.dispatch import Signal, receiver
from django.http import HttpRequest

from accounts.models import User
from audit.services import logbook_append

# Sent inside the transaction that changed or removed memberships (the admin's inline rows, the
# sync at a SAML sign-in), with ``memberships`` (a list of (person pk, account pk)), ``actor``
# (who changed them; None for the identity provider) and ``via`` ("admin", "saml"): the
# requests app ends the live access of each person who no longer holds the Admin role there.
memberships_changed = Signal()


@receiver(user_logged_in, dispatch_uid="passport_logbook_local_sign_in")
def record_local_sign_in(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    methods = request.session.get("account_authentication_methods", [])
    logbook_append(
        action="auth.signed_in",
        actor=user,
        detail={
            "method": "local",
            "identity_store": user.identity_store,
            "mfa": any(entry.get("method") == "mfa" for entry in methods),
        },
    )
