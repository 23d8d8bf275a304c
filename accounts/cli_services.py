"""Device authorization for the `passport` CLI (the OAuth 2.0 device flow, RFC 8628, in small).

1. The CLI starts: it gets a secret device code and a short user code.
2. The person, signed in to the portal, types (or follows a link with) the user code and confirms.
3. The CLI polls with the device code; after confirmation it receives one bearer token
   (an ``ApiToken``: only its SHA-256 is stored). Listing and revoking tokens: accounts.cli_tokens;
   a revocation of the person's tokens voids their codes confirmed but not yet collected too.

The CLI's published wheels, which `passport version --self-update` installs: accounts.cli_releases.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.authentication import hash_token
from accounts.cli_tokens import idp_trust_refusal
from accounts.models import ApiToken, DeviceAuthorization, User
from audit.refusals import UNKNOWN_SOURCE, logbook_append_aggregated
from audit.services import logbook_append
from audit.throttle import ThrottleVerdict, throttle_hit, throttle_refund

DEVICE_CODE_LIFETIME = timedelta(minutes=10)
POLL_INTERVAL_SECONDS = 2
SLOW_DOWN_SECONDS = 5  # RFC 8628 section 3.5: what a client adds to its interval on slow_down
TOKEN_LIFETIME = timedelta(hours=12)
# No 0/O, 1/I/L: the code is read off one screen and typed into another.
USER_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_ATTEMPT_SCOPE = "cli.user_code"


class DeviceFlowError(Exception):
    """``code`` is the RFC 8628 error name the token endpoint answers with; ``refusal`` the reason
    code a refused exchange is recorded under (``cli.device_code_refused``), "" for none."""

    def __init__(self, code: str, message: str, *, refusal: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.refusal = refusal


class DeviceCodeThrottled(DeviceFlowError):
    """Too many wrong codes from one person: the code was not looked at."""

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, -(-retry_after // 60))
        super().__init__(
            "slow_down",
            f"Too many codes tried: wait {minutes} minute{'s' if minutes != 1 else ''}, then enter the code again.",
        )
        self.retry_after = retry_after


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


def device_authorization_start(*, client_name: str = "", started_from: str = "") -> DeviceStart:
    """A new pending code; ``started_from`` is the starting client's IP address
    (audit.refusals.client_address), "" for none."""
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
        started_from=_ip_address(started_from),
        expires_at=expires_at,
    )
    return DeviceStart(device_code=device_code, user_code=user_code, expires_at=expires_at)


def _ip_address(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def device_authorization_pending(*, user_code: str) -> DeviceAuthorization | None:
    """The live, unconfirmed authorization with this user code, if any."""
    return DeviceAuthorization.objects.filter(
        user_code=normalize_user_code(user_code), confirmed_at__isnull=True, expires_at__gt=timezone.now()
    ).first()


def _code_attempt(*, user: User) -> ThrottleVerdict:
    """Count one code tried by this person, or refuse it unseen past the limit.

    Guessing a code that someone else's terminal shows would sign their CLI in as the guesser;
    every attempt is counted before the code is looked at, and a right one is given back.
    """
    verdict = throttle_hit(
        scope=CODE_ATTEMPT_SCOPE,
        key=str(user.pk),
        limit=settings.PASSPORT_CLI_CODE_ATTEMPTS,
        window_seconds=settings.PASSPORT_CLI_CODE_WINDOW_SECONDS,
    )
    if not verdict.allowed:
        logbook_append_aggregated(
            action="cli.code_throttled",
            source=f"user:{user.pk}",
            reason="too_many_codes",
            actor=user,
            detail={
                "limit": settings.PASSPORT_CLI_CODE_ATTEMPTS,
                "window_seconds": settings.PASSPORT_CLI_CODE_WINDOW_SECONDS,
            },
        )
        raise DeviceCodeThrottled(verdict.retry_after)
    return verdict


def device_authorization_lookup(*, user_code: str, user: User) -> DeviceAuthorization | None:
    """``device_authorization_pending`` for the confirmation page: a lookup is an attempt too."""
    verdict = _code_attempt(user=user)
    pending = device_authorization_pending(user_code=user_code)
    if pending is not None:
        throttle_refund(scope=CODE_ATTEMPT_SCOPE, key=str(user.pk), verdict=verdict)
    return pending


def device_authorization_confirm(
    *,
    user_code: str,
    user: User,
    session_ends_at: datetime | None = None,
    idp_slug: str = "",
    idp_trust: str | None = None,
    confirmed_from: str = "",
) -> DeviceAuthorization:
    """Sign the CLI showing ``user_code`` in as ``user``, its token to end no later than the
    confirming session (``session_ends_at``) and with the SAML identity provider that session was
    signed in through (``idp_slug``; "" for another sign-in: accounts.saml.withdrawal) and that IdP's
    trust as the session recorded it (``idp_trust``: accounts.cli_tokens.idp_trust_refusal); raises
    DeviceCodeThrottled past the attempt limit. ``cli.login`` names the address that started the
    code and the one that confirmed it (``confirmed_from``, as ``started_from``)."""
    verdict = _code_attempt(user=user)
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
        authorization.session_ends_at = session_ends_at
        authorization.idp_slug = idp_slug
        authorization.idp_trust = idp_trust if idp_slug else None
        authorization.save(update_fields=["user", "confirmed_at", "session_ends_at", "idp_slug", "idp_trust"])
        logbook_append(
            action="cli.login",
            actor=user,
            detail={
                "client": authorization.client_name,
                "started_from": authorization.started_from or UNKNOWN_SOURCE,
                "confirmed_from": _ip_address(confirmed_from) or UNKNOWN_SOURCE,
            },
        )
    throttle_refund(scope=CODE_ATTEMPT_SCOPE, key=str(user.pk), verdict=verdict)
    return authorization


def _pending_poll(authorization: DeviceAuthorization) -> DeviceFlowError:
    """Record a poll of a code still waiting for confirmation; sooner than the interval is slow_down.

    RFC 8628 section 3.5: slow_down is a kind of authorization_pending, so it is answered only while
    the code waits. Every poll counts as the last one, a hurried one too, so a client that keeps
    hurrying keeps being told.
    """
    now = timezone.now()
    previous = authorization.last_polled_at
    authorization.last_polled_at = now
    authorization.save(update_fields=["last_polled_at"])
    if previous is not None and now - previous < timedelta(seconds=POLL_INTERVAL_SECONDS):
        return DeviceFlowError(
            "slow_down",
            f"Polled faster than every {POLL_INTERVAL_SECONDS} seconds: "
            f"wait {SLOW_DOWN_SECONDS} seconds longer between polls.",
        )
    return DeviceFlowError("authorization_pending", "Waiting for the code to be confirmed in the portal.")


def device_token_exchange(*, device_code: str, source: str = "") -> IssuedToken:
    """Called by the polling CLI; raises DeviceFlowError until the person has confirmed.

    A refused exchange (a code used again, or one whose person, session or identity provider no
    longer stands behind it) is recorded once its transaction has rolled back, under the code's
    person; ``source`` is the client's address (``audit.refusals.client_source``). An unknown code
    names nobody and is recorded by address. Never the device code or its hash.
    """
    try:
        return _device_token_exchange(device_code=device_code)
    except DeviceFlowError as error:
        if error.refusal:
            _exchange_refusal_record(error=error, device_code=device_code, source=source)
        raise


def _exchange_refusal_record(*, error: DeviceFlowError, device_code: str, source: str) -> None:
    authorization = (
        DeviceAuthorization.objects.select_related("user").filter(device_code_hash=hash_token(device_code)).first()
    )
    user = authorization.user if authorization is not None else None
    if user is None:
        logbook_append_aggregated(
            action="cli.device_code_refused", source=source, reason=error.refusal, detail={"reason": error.refusal}
        )
        return
    assert authorization is not None  # a person is only ever named by a code
    logbook_append_aggregated(
        action="cli.device_code_refused",
        source=f"user:{user.pk}",
        reason=error.refusal,
        actor=user,
        detail={"reason": error.refusal, "client": authorization.client_name, "address": source or UNKNOWN_SOURCE},
        capped=False,
    )


def _device_token_exchange(*, device_code: str) -> IssuedToken:
    with transaction.atomic():
        authorization = (
            DeviceAuthorization.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(device_code_hash=hash_token(device_code))
            .first()
        )
        if authorization is None:
            # Or one confirmed, then voided by a revocation of the person's tokens before the CLI
            # collected it (accounts.cli_tokens): its row is gone, as a revoked token's is.
            raise DeviceFlowError(
                "invalid_grant",
                "Unknown device code, or its sign-in was revoked: run `passport auth login` again.",
                refusal="unknown_code",
            )
        if authorization.used_at is not None:
            raise DeviceFlowError(
                "invalid_grant", "This device code has already been exchanged for a token.", refusal="replayed"
            )
        if authorization.expires_at <= timezone.now():
            raise DeviceFlowError("expired_token", "The code expired before it was confirmed: sign in again.")
        if authorization.confirmed_at is None or authorization.user is None:
            # Raised once the transaction has stored the poll's time.
            pending = _pending_poll(authorization)
        else:
            return _token_issue(authorization=authorization, user=authorization.user)
    raise pending


def _token_issue(*, authorization: DeviceAuthorization, user: User) -> IssuedToken:
    """The confirmed code's one token; the caller holds the code's row locked."""
    if not user.is_active:
        raise DeviceFlowError("access_denied", "This account is disabled.", refusal="disabled")
    now = timezone.now()
    expires_at = now + TOKEN_LIFETIME
    if authorization.session_ends_at is not None:
        # A token outlives neither its lifetime nor the session that signed it in (a person
        # removed at the identity provider keeps nothing past that session's end).
        if authorization.session_ends_at <= now:
            raise DeviceFlowError(
                "expired_token",
                "The session that confirmed this code has ended: sign in again.",
                refusal="session_ended",
            )
        expires_at = min(expires_at, authorization.session_ends_at)
    idp_refusal = idp_trust_refusal(idp_slug=authorization.idp_slug, idp_trust=authorization.idp_trust)
    if idp_refusal:
        # Withdrawing an IdP in the admin voids its codes (accounts.saml.withdrawal); one taken out of
        # the settings, or given another certificate there, is found here.
        raise DeviceFlowError(
            "access_denied",
            "The identity provider that confirmed this code is no longer trusted.",
            refusal=idp_refusal,
        )
    raw = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=f"passport CLI {authorization.client_name}".strip()[:100],
        token_hash=hash_token(raw),
        expires_at=expires_at,
        idp_slug=authorization.idp_slug,
        idp_trust=authorization.idp_trust,
    )
    authorization.used_at = timezone.now()
    authorization.save(update_fields=["used_at"])
    # By id, as cli.token_revoked names it later (accounts.cli_tokens): never the token or its hash.
    logbook_append(
        action="cli.token_issued",
        actor=user,
        detail={"token": token.pk, "name": token.name, "expires_at": expires_at.isoformat()},
    )
    return IssuedToken(token=raw, expires_at=expires_at, username=user.username)
