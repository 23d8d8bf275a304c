"""Password sign-in for local people only.

Someone who came by SAML is who their identity provider says, with what its groups give
them. A password they hold in Passport (set by an admin's form or `manage.py changepassword`)
would let them in after the IdP took their groups away, so no password backend accepts them;
their sessions (signed in by SAML) are untouched: only ``authenticate`` refuses.

A deactivated person's right password is answered as a wrong one: allauth's backend keeps such a
user aside ("stashes" them) for its adapter, which then signs nobody in but sends the browser to its
"account inactive" page and gives back the guess it counted (as for any password that works). That
tells a deactivated person's password apart from a wrong one, without limit; so nothing is kept aside
here, and the adapter sees a wrong password: the form's answer, the guess counted, on record.
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.account.auth_backends import AuthenticationBackend
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from accounts.adapters import signs_in_through_an_idp

logger = logging.getLogger(__name__)


def _local_only(user: Any) -> Any:
    if user is not None and signs_in_through_an_idp(user):
        logger.warning("password sign-in refused for user %s: they sign in through their identity provider", user.pk)
        return None
    return user


class LocalModelBackend(ModelBackend):
    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> Any:
        return _local_only(super().authenticate(request, *args, **kwargs))


class LocalAllauthBackend(AuthenticationBackend):
    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> Any:
        user = super().authenticate(request, **credentials)
        # An inactive user whose password was right, kept aside for allauth's adapter (above): dropped.
        AuthenticationBackend.unstash_authenticated_user()
        return _local_only(user)
