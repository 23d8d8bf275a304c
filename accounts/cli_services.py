"""Device authorization for the `passport` CLI (the OAuth 2.0 device flow, RFC 8628, in small).

1. The CLI starts: it gets a secret device code and a short user code.
2. The person, signed in to the portal, types (or follows a link with) the user code and confirms.
3. The CLI polls with the device code; after confirmation it receives one bearer token
   (an ``ApiToken``: only its SHA-256 is stored).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.authentication import hash_token
from accounts.models import ApiToken, DeviceAuthorization, User
from audit.services import logbook_append

DEVICE_CODE_LIFETIME = timedelta(minutes=10)
POLL_INTERVAL_SECONDS = 2
TOKEN_LIFETIME = timedelta(hours=12)
# No 0/O, 1/I/L: the code is read off one screen and typed into another.
USER_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


class DeviceFlowError(Exception):
    """``code`` is the RFC 8628 error name the token endpoint answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DeviceStart:
    device_code: str
    user_code: str
    expires_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    username: str


def normalize_user_code(raw: str) -> str:
    code = "".join(ch for ch in raw.upper() if ch.isalnum())
    return f"{code[:4]}-{code[4:]}" if len(code) == 8 else code


def _new_user_code() -> str:
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def device_authorization_start(*, client_name: str = "") -> DeviceStart:
    DeviceAuthorization.objects.filter(expires_at__lt=timezone.now() - timedelta(days=1)).delete()
    device_code = secrets.token_urlsafe(32)
    expires_at = timezone.now() + DEVICE_CODE_LIFETIME
    for _ in range(5):
        user_code = _new_user_code()
        if not DeviceAuthorization.objects.filter(user_code=user_code).exists():
            break
    DeviceAuthorization.objects.create(
        device_code_hash=hash_token(device_code),
        user_code=user_code,
        client_name=client_name[:100],
        expires_at=expires_at,
    )
    return DeviceStart(device_code=device_code, user_code=user_code, expires_at=expires_at)


def device_authorization_pending(*, user_code: str) -> DeviceAuthorization | None:
    """The live, unconfirmed authorization with this user code, if any."""
    return DeviceAuthorization.objects.filter(
        user_code=normalize_user_code(user_code), confirmed_at__isnull=True, expires_at__gt=timezone.now()
    ).first()


def device_authorization_confirm(*, user_code: str, user: User) -> DeviceAuthorization:
    with transaction.atomic():
        authorization = (
            DeviceAuthorization.objects.select_for_update().filter(user_code=normalize_user_code(user_code)).first()
        )
        if authorization is None or authorization.expires_at <= timezone.now():
            raise DeviceFlowError(
                "expired_token", "This code is unknown or has expired: run `passport auth login` again."
            )
        if authorization.confirmed_at is not None:
            raise DeviceFlowError("invalid_grant", "This code has already been used.")
        authorization.user = user
        authorization.confirmed_at = timezone.now()
        authorization.save(update_fields=["user", "confirmed_at"])
        logbook_append(action="cli.login", actor=user, detail={"client": authorization.client_name})
    return authorization


def device_token_exchange(*, device_code: str) -> IssuedToken:
    """Called by the polling CLI; raises DeviceFlowError until the person has confirmed."""
    with transaction.atomic():
        authorization = (
            DeviceAuthorization.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(device_code_hash=hash_token(device_code))
            .first()
        )
        if authorization is None:
            raise DeviceFlowError("invalid_grant", "Unknown device code.")
        if authorization.used_at is not None:
            raise DeviceFlowError("invalid_grant", "This device code has already been exchanged for a token.")
        if authorization.expires_at <= timezone.now():
            raise DeviceFlowError("expired_token", "The code expired before it was confirmed: sign in again.")
        if authorization.confirmed_at is None or authorization.user is None:
            raise DeviceFlowError("authorization_pending", "Waiting for the code to be confirmed in the portal.")
        if not authorization.user.is_active:
            raise DeviceFlowError("access_denied", "This account is disabled.")
        raw = secrets.token_urlsafe(32)
        expires_at = timezone.now() + TOKEN_LIFETIME
        ApiToken.objects.create(
            user=authorization.user,
            name=f"passport CLI {authorization.client_name}".strip()[:100],
            token_hash=hash_token(raw),
            expires_at=expires_at,
        )
        authorization.used_at = timezone.now()
        authorization.save(update_fields=["used_at"])
    return IssuedToken(token=raw, expires_at=expires_at, username=authorization.user.username)


def api_token_revoke(*, token: ApiToken) -> None:
    token.delete()
