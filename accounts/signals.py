"""Local sign-ins (password, password + TOTP) go to the Logbook.

allauth's own signal is used, not Django's: it fires only when a person signs in through
the sign-in page, not on every `login()` (tests' force_login, SAML, which records itself).
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.models import User
from audit.services import logbook_append


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
