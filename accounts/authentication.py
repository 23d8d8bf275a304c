"""Bearer tokens for the CLI and scripts (``Authorization: Bearer <token>``), and the endpoints they
may not call."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.cli_tokens import RevokeReason, api_token_idp_refusal, api_token_mark_used, api_token_revoke
from accounts.models import ApiToken
from accounts.permissions import CLI_SIGN_IN_DECIDES_NOTHING
from accounts.security_log import bearer_refusal_record
from audit.origin import logbook_cli_token_set

if TYPE_CHECKING:  # rest_framework.views reads the settings that name this module: not at import
    from rest_framework.views import APIView


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# What a client is told when its token is refused: expired (sign in again), or any other reason; and
# when its Authorization header is not one bearer token.
EXPIRED_MESSAGE = "The token has expired: sign in again with `passport auth login`."
UNKNOWN_MESSAGE = "Unknown or revoked token: sign in again with `passport auth login`."
MALFORMED_MESSAGE = "Malformed Authorization header: use 'Bearer <token>'."


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"  # nosec B105

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(MALFORMED_MESSAGE)
        found = bearer_token_live(header[1], request=request._request)
        if isinstance(found, str):
            raise exceptions.AuthenticationFailed(found)
        # Every Logbook entry this request causes names the token (never its secret).
        logbook_cli_token_set(found.pk)
        return found.user, found

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def bearer_token_live(raw: bytes, *, request: HttpRequest) -> ApiToken | str:
    """The live CLI token whose secret is ``raw`` (its person selected with it), marked used; else what
    the client is told. A refusal is on record (``cli.token_refused``, aggregated: a flood is one entry
    and a count; keyed by ``request``'s client address), never with the token itself. The API's
    authentication and the CLI's SSH proxy (terminal.proxy.auth) both decide by it."""
    token = ApiToken.objects.select_related("user").filter(token_hash=hash_token(raw.decode(errors="replace"))).first()
    refusal = _refusal(token)
    if refusal:
        bearer_refusal_record(request=request, reason=refusal, token=token)
        if token is not None and refusal == "idp_replaced":
            # For good (the IdP it trusted is gone): revoked, so that what it opened ends with it.
            api_token_revoke(token=token, actor=None, reason=RevokeReason.IDP_REPLACED)
        return EXPIRED_MESSAGE if refusal == "expired" else UNKNOWN_MESSAGE
    assert token is not None  # no refusal: a live token
    api_token_mark_used(token=token)
    return token


def _refusal(token: ApiToken | None) -> str:
    """Why this token is refused (a reason code of ``cli.token_refused``), or "" if it is live."""
    if token is None:
        return "unknown_token"  # never issued, or revoked (its row is gone)
    if not token.user.is_active:
        return "person_inactive"
    idp_refusal = api_token_idp_refusal(token=token)
    if idp_refusal:
        return idp_refusal
    if token.expires_at <= timezone.now():
        return "expired"
    return ""


SESSION_ONLY_MESSAGE = CLI_SIGN_IN_DECIDES_NOTHING


def cli_token_used(request: Request) -> bool:
    """Whether a CLI token authenticated this request (not a browser sign-in): then it acts on the
    person's own access only (``SessionOnly``; ``own_only`` of the ending services and their checks)."""
    return isinstance(request.successful_authenticator, BearerTokenAuthentication)


class SessionOnly(BasePermission):
    """Refuses a request that a CLI token authenticated.

    The token is for the person's own access (asking for it, connecting, extending and ending it) and
    lives on a laptop, in a file, for hours; decisions on other people's access and an inventory refresh
    stay with a browser sign-in. The CLI calls none of these endpoints. Cancelling and completing, which
    the CLI does for its person, take the token for their own requests only: those endpoints pass
    ``cli_token_used`` to the services as ``own_only``.
    """

    message = SESSION_ONLY_MESSAGE

    def has_permission(self, request: Request, view: APIView) -> bool:
        return not cli_token_used(request)
