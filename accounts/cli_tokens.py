"""The CLI's bearer tokens (``ApiToken``) after they are issued: listing a person's live ones,
revoking them, and noting when one is used.

A token is revoked by deleting its row: every check (``accounts.authentication``, the proxy's
``terminal.proxy.auth``) looks it up by hash, so a deleted token is refused everywhere at once.
Each revocation is one ``cli.token_revoked`` Logbook entry, which names the token (its id, name
and times, never its hash) and why; ``api_tokens_revoked`` tells the apps above, so the terminal
app closes the CLI proxy connections that signed in with it once the revocation commits, and the
requests app ends the Session Manager sessions it started (`passport forward`, `connect` to
Windows, direct SSH: requests_app.services.withdrawn.tokens), which the CLI holds itself. Revoking
all of a person's also voids their codes confirmed but not yet exchanged for a token: one
``cli.device_codes_voided`` entry with the count.

Who revokes: the person (their "CLI sign-ins" page, or ``passport auth logout``), a site admin
(the admin's action), and the portal itself when the person's password or second factor changes
or an admin deactivates them (``accounts.signals``), or when the SAML identity provider that signed
the token in is withdrawn (``accounts.saml.withdrawal``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models, transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from accounts.models import ApiToken, DeviceAuthorization, User
from accounts.saml.config import identity_provider_trust_of, trust_verdict
from audit.services import logbook_append, logbook_batch

# Sent inside the revoking transaction with ``token_ids``, their people's ``user_ids`` and the
# ``reason`` (a RevokeReason value): the apps above accounts, which must not import them, act on
# commit: the terminal app closes the CLI proxy connections those tokens opened, the requests app
# ends the Session Manager sessions they started for the CLI's own data channel.
api_tokens_revoked = Signal()

# Each revoked token's entry, with its ``token`` (id) and ``reason``.
TOKEN_REVOKED = "cli.token_revoked"  # noqa: S105  # nosec B105 (an action's name, not a secret)

# Using a token writes its last use at most this often: not one UPDATE per API call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class RevokeReason(models.TextChoices):
    REVOKED = "revoked", "Revoked by the person"
    SIGNED_OUT = "signed_out", "Signed out of the CLI (passport auth logout)"
    REVOKED_BY_ADMIN = "revoked_by_admin", "Revoked by a site admin"
    PASSWORD_CHANGED = "password_changed", "The person's password changed"
    SECOND_FACTOR_CHANGED = "second_factor_changed", "The person's second factor changed"
    DEACTIVATED = "deactivated", "The person was deactivated"
    IDP_DISABLED = "idp_disabled", "The identity provider that signed it in was disabled or deleted"
    IDP_REPLACED = "idp_replaced", "The certificate or entity id of the identity provider that signed it in changed"


def api_token_live_list(*, user: User) -> QuerySet[ApiToken]:
    """The person's tokens that still work, newest first."""
    return ApiToken.objects.filter(user=user, expires_at__gt=timezone.now()).order_by("-created_at", "-pk")


def api_token_get_for_user(*, user: User, pk: int) -> ApiToken | None:
    """One of the person's own tokens; another's is never loaded."""
    return ApiToken.objects.filter(user=user, pk=pk).first()


def api_tokens_expire_at(*, pks: list[int]) -> dict[int, datetime]:
    """When each of these tokens ends, in one query; a revoked one (its row deleted) is left out."""
    return dict(ApiToken.objects.filter(pk__in=pks).values_list("pk", "expires_at"))


def idp_trust_refusal(*, idp_slug: str | None, idp_trust: str | None) -> str:
    """Why a token or code is refused for the SAML identity provider that vouched for it (its
    ``idp_slug``, the trust its confirming session recorded): ``idp_withdrawn`` while people may
    not sign in through it, ``idp_replaced`` once it is another (a new certificate or entity id,
    set in the admin or in PASSPORT_SAML_IDPS, or a metadata URL's new certificate: the browser
    session ends the same way, accounts.session_lifetime); "" while it is the same, or none did
    (another sign-in, or from before ``idp_slug`` was kept). One that names an IdP but no trust
    (issued before it was kept) is ``idp_replaced`` too: nothing tells it came from the IdP as it is
    now. Withdrawing an admin row revokes them at once (accounts.saml.withdrawal); a settings
    entry's change is found by this check at each use. At most one query."""
    if not idp_slug:
        return ""
    verdict = trust_verdict(identity_provider_trust_of(idp_slug), idp_trust)
    if verdict is None:
        return ""
    return "idp_withdrawn" if verdict == "idp_disabled" else "idp_replaced"


def api_token_idp_refusal(*, token: ApiToken) -> str:
    """``idp_trust_refusal`` for a token: "" while the IdP behind it (if any) still vouches for it."""
    return idp_trust_refusal(idp_slug=token.idp_slug, idp_trust=token.idp_trust)


def api_token_mark_used(*, token: ApiToken) -> None:
    """Note that the token was just used (shown on the CLI sign-ins page and in the admin)."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


def api_tokens_revoke(*, tokens: QuerySet[ApiToken], actor: User | None, reason: RevokeReason) -> int:
    """Revoke these tokens, each with its Logbook entry; returns how many there were.

    Runs in one transaction with its entries. Revoking a token twice is harmless: the second
    finds nothing. ``actor`` is who revoked them (None: the portal, for ``reason``).
    """
    with transaction.atomic():
        revoked = list(tokens.select_for_update(of=("self",)).select_related("user").order_by("pk"))
        if not revoked:
            return 0
        ApiToken.objects.filter(pk__in=[token.pk for token in revoked]).delete()
        for token in revoked:
            logbook_append(
                action=TOKEN_REVOKED,
                actor=actor,
                detail={
                    "token": token.pk,
                    "user": token.user.username,
                    "name": token.name,
                    "created_at": token.created_at.isoformat(),
                    "expires_at": token.expires_at.isoformat(),
                    "reason": reason.value,
                },
            )
        api_tokens_revoked.send(
            sender=ApiToken,
            token_ids=[token.pk for token in revoked],
            user_ids=sorted({token.user_id for token in revoked}),
            reason=reason.value,
        )
    return len(revoked)


def api_token_revoke(*, token: ApiToken, actor: User | None, reason: RevokeReason) -> bool:
    """Revoke one token; False when it was already gone."""
    return api_tokens_revoke(tokens=ApiToken.objects.filter(pk=token.pk), actor=actor, reason=reason) == 1


def device_authorizations_void_for_user(*, user_id: int, actor: User | None, reason: str) -> int:
    """Void the person's sign-ins on their way: codes confirmed as them whose CLI has not exchanged
    them for a token yet (accounts.cli_services); returns how many. Their rows are deleted, as a
    revoked token's: the CLI's next poll finds no such code.

    One ``cli.device_codes_voided`` Logbook entry with the count (never a code or its hash)."""
    return device_authorizations_void(
        authorizations=DeviceAuthorization.objects.filter(user_id=user_id), actor=actor, reason=reason
    )


def device_authorizations_void(
    *, authorizations: QuerySet[DeviceAuthorization], actor: User | None, reason: str
) -> int:
    """``device_authorizations_void_for_user`` for those of these codes still on their way (confirmed,
    not exchanged, not expired), of any people: one ``cli.device_codes_voided`` entry per person."""
    with transaction.atomic():
        live = authorizations.filter(confirmed_at__isnull=False, used_at__isnull=True, expires_at__gt=timezone.now())
        # Locked as read: a poll exchanging one meanwhile (it holds the row) is waited for, then left out.
        rows = list(live.select_for_update().values_list("pk", "user_id"))
        counts: dict[int, int] = {}
        for _, user_id in rows:
            counts[user_id] = counts.get(user_id, 0) + 1
        count, _ = DeviceAuthorization.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
        names = dict(User.objects.filter(pk__in=counts).values_list("pk", "username"))
        for user_id in sorted(counts):
            detail = {"user": names.get(user_id, ""), "count": counts[user_id], "reason": reason}
            logbook_append(action="cli.device_codes_voided", actor=actor, detail=detail)
    return count


def api_tokens_revoke_for_user(*, user_id: int, actor: User | None, reason: RevokeReason) -> int:
    """Revoke every live token of one person (an expired one is refused already), and the ones on
    their way: a code confirmed as them (by whoever held their session) that the CLI has not yet
    exchanged would otherwise become a token after this. Returns how many tokens there were.

    Its Logbook entries are appended at its end (``logbook_batch``), after the rows of both: a
    sign-out (``api_token_revoke``) holds its token's row, then appends; a poll, its code's."""
    with transaction.atomic(), logbook_batch():
        # The codes first. A poll holding a code's row locked (device_token_exchange) makes this
        # DELETE wait, then skip the row it marked used; the token query below, a later statement
        # (read committed), then sees the token that poll committed. The other way round, the poll
        # waits for this and finds no code.
        device_authorizations_void_for_user(user_id=user_id, actor=actor, reason=reason.value)
        live = ApiToken.objects.filter(user_id=user_id, expires_at__gt=timezone.now())
        return api_tokens_revoke(tokens=live, actor=actor, reason=reason)
