"""Password sign-in for local people only.

Someone who came by SAML is who their identity provider says, with what its groups give
them. A password they hold in Passport (set by an admin's form or `manage.py changepassword`)
would let them in after the IdP took their groups away, so no password backend accepts them;
their sessions (signed in by SAML) are untouched: only ``authenticate`` refuses.
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
        return _local_only(super().authenticate(request, **credentials))
