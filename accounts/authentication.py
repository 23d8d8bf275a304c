"""Bearer tokens for the CLI and scripts (``Authorization: Bearer <token>``)."""

from __future__ import annotations

import hashlib
from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.cli_tokens import api_token_idp_live, api_token_mark_used
from accounts.models import ApiToken


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"  # nosec B105

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer <token>'.")
        token = (
            ApiToken.objects.select_related("user")
            .filter(token_hash=hash_token(header[1].decode(errors="replace")))
            .first()
        )
        if token is None or not token.user.is_active or not api_token_idp_live(token=token):
            raise exceptions.AuthenticationFailed("Unknown or revoked token: sign in again with `passport auth login`.")
        if token.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("The token has expired: sign in again with `passport auth login`.")
        api_token_mark_used(token=token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
