"""What a local person's security changes and refused sign-ins write to the Logbook.

Changes (a new password, a second factor added or removed, recovery codes made anew) are written
by the models' receivers (accounts.signals) in the transaction that saved them, whatever path made
them; which page did it, and who, is read from the request allauth's middleware keeps for the
thread (``allauth.core.context``): none for a script or ``manage.py``. The admin's password form is
left to the admin trail, which records it with the admin as actor (``admin.changed``).

Refusals (a wrong password or second factor's code, a guess refused by the limit on guesses, a
bearer token or a device code refused) go through
``audit.refusals.logbook_append_aggregated``: a flood is one entry and a count. Their reasons are
fixed codes; no entry holds a password, a token, a device code or a login nobody has.
"""

from __future__ import annotations

from typing import Any

from allauth.core import context
from allauth.mfa.models import Authenticator
from django.http import HttpRequest

from accounts.models import User
from audit.refusals import client_source, logbook_append_aggregated
from audit.services import logbook_append

# The allauth pages that set a password from a reset link or code, not from the old password.
RESET_PAGES = frozenset({"account_reset_password_from_key", "account_complete_password_reset"})
REGENERATE_PAGE = "mfa_generate_recovery_codes"
ADMIN_NAMESPACE = "admin"


def _current_request() -> HttpRequest | None:
    request: HttpRequest | None = context.request
    return request


def _page(request: HttpRequest | None) -> tuple[str, str]:
    """(namespace, url name) of the page being answered; ("", "") outside one."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "", ""
    return match.namespace or "", match.url_name or ""


def _signed_in(request: HttpRequest | None) -> User | None:
    user = getattr(request, "user", None)
    return user if isinstance(user, User) and user.is_authenticated else None


# The same readings, for the trail of changes made outside the admin (accounts.change_trail).
current_request = _current_request
current_page = _page
signed_in_person = _signed_in


def password_change_record(*, person: User) -> None:
    """``auth.password_changed`` with how (self, reset, other) and by whom; never the password or its hash.

    ``usable`` is False for a password set unusable (sign-in by password turned off)."""
    request = _current_request()
    namespace, page = _page(request)
    if namespace == ADMIN_NAMESPACE:
        return  # the admin trail's admin.changed records it, naming the admin
    signed_in = _signed_in(request)
    actor: User | None
    if page in RESET_PAGES:
        how, actor = "reset", person  # whoever holds the person's reset link acts as them
    elif signed_in is not None and signed_in.pk == person.pk:
        how, actor = "self", person
    else:
        how, actor = "other", signed_in
    detail: dict[str, Any] = {"how": how, "usable": person.has_usable_password()}
    if actor is None or actor.pk != person.pk:
        detail["user"] = person.username
    logbook_append(action="auth.password_changed", actor=actor, detail=detail)


def _authenticator_record(action: str, authenticator: Authenticator) -> None:
    signed_in = _signed_in(_current_request())
    detail: dict[str, Any] = {"type": str(authenticator.type)}
    if signed_in is None or signed_in.pk != authenticator.user_id:
        detail["user"] = User.objects.filter(pk=authenticator.user_id).values_list("username", flat=True).first()
    logbook_append(action=action, actor=signed_in, detail=detail)


def authenticator_added_record(*, authenticator: Authenticator) -> None:
    """``auth.mfa_added`` with its type, or ``auth.recovery_codes_regenerated`` for the page that
    replaces the codes (its removal of the old ones writes nothing: ``authenticator_removed_record``)."""
    regenerated = (
        authenticator.type == Authenticator.Type.RECOVERY_CODES and _page(_current_request())[1] == REGENERATE_PAGE
    )
    _authenticator_record("auth.recovery_codes_regenerated" if regenerated else "auth.mfa_added", authenticator)


def authenticator_removed_record(*, authenticator: Authenticator) -> None:
    """``auth.mfa_removed`` with its type; the old codes that the regenerating page replaces are not
    a removal (``auth.recovery_codes_regenerated`` says it)."""
    if authenticator.type == Authenticator.Type.RECOVERY_CODES and _page(_current_request())[1] == REGENERATE_PAGE:
        return
    _authenticator_record("auth.mfa_removed", authenticator)


def sign_in_failure_record(*, request: HttpRequest | None, credentials: dict[str, Any], reason: str = "") -> None:
    """A refused local sign-in, keyed by the client's address: ``wrong_password`` naming the person
    when the login is someone's, else ``unknown_login`` (what was typed may be a password); or
    ``reason`` as given (``rate_limited``: refused by the limit on guesses, the password not tried),
    naming the person when the login is someone's."""
    login = str(credentials.get("username") or credentials.get("email") or "")[:254]
    person = (
        User.objects.filter(username__iexact=login).first() or User.objects.filter(email__iexact=login).first()
        if login
        else None
    )
    sign_in_refusal_record(
        request=request, person=person, reason=reason or ("wrong_password" if person is not None else "unknown_login")
    )


def sign_in_refusal_record(*, request: HttpRequest | None, person: User | None, reason: str) -> None:
    """``auth.sign_in_refused`` for ``reason`` (a fixed code: ``wrong_password``, ``unknown_login``,
    ``rate_limited``, ``wrong_code`` for a second factor's), naming ``person`` if any; the first of a
    kind from a client address in a window is an entry, the rest a count
    (``audit.refusals.logbook_append_aggregated``)."""
    detail: dict[str, Any] = {"method": "local"}
    if person is not None:
        detail["person"] = person.username
    logbook_append_aggregated(
        action="auth.sign_in_refused",
        source=client_source(request) if request is not None else "",
        reason=reason,
        detail={**detail, "reason": reason},
    )


def bearer_refusal_record(*, request: HttpRequest, reason: str, token: Any = None) -> None:
    """A refused CLI bearer token: by the client's address when it names nobody (unknown, revoked),
    else under its person (``user:<id>``), with the token's id, never the token or its hash."""
    address = client_source(request)
    if token is None:
        logbook_append_aggregated(action="cli.token_refused", source=address, reason=reason, detail={"reason": reason})
        return
    logbook_append_aggregated(
        action="cli.token_refused",
        source=f"user:{token.user_id}",
        reason=reason,
        actor=token.user,
        detail={"reason": reason, "token": token.pk, "name": token.name, "address": address},
        capped=False,
    )
