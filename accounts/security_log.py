"""What a local person's security changes, grants made outside the admin and refused sign-ins write
to the Logbook.

Changes (a new password, a second factor added or removed, recovery codes made anew) are written
by the models' receivers (accounts.signals) in the transaction that saved them, whatever path made
them; which page did it, and who, is read from the request allauth's middleware keeps for the
thread (``allauth.core.context``): none for a script or ``manage.py``. The admin's password form is
left to the admin trail, which records it with the admin as actor (``admin.changed``).

Grants (site admin, ``auth.site_admin_granted``; a role or the approver's right on an account,
``account.membership_changed``) are written the same way, by the models' receivers, whenever a save
gives one: ``manage.py createsuperuser``, a script, a fixture. The admin's trail records its own
(``admin.changed``, ``admin.added``), and a SAML sign-in its ``auth.saml_synced``, which runs its saves
in ``grants_recorded_elsewhere()``: each is on record once.

Refusals (a wrong password, a bearer token or a device code refused) go through
``audit.refusals.logbook_append_aggregated``: a flood is one entry and a count. Their reasons are
fixed codes; no entry holds a password, a token, a device code or a login nobody has.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from allauth.core import context
from allauth.mfa.models import Authenticator
from django.http import HttpRequest

from accounts.models import AwsAccount, Membership, User
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


_grants_recorded_elsewhere: ContextVar[bool] = ContextVar("passport_grants_recorded_elsewhere", default=False)

# A role's rank: a save that raises it (or creates a row above None) grants something.
ROLE_RANK: dict[str, int] = {Membership.Role.NONE: 0, Membership.Role.OBSERVER: 1, Membership.Role.ADMIN: 2}


@contextmanager
def grants_recorded_elsewhere() -> Iterator[None]:
    """The saves inside give grants that their caller records in an entry of its own (a SAML sign-in's
    ``auth.saml_synced``): the receivers write no second one."""
    token = _grants_recorded_elsewhere.set(True)
    try:
        yield
    finally:
        _grants_recorded_elsewhere.reset(token)


def _grant_actor() -> tuple[bool, User | None]:
    """Whether a grant being saved is for this module to record, and who made it: not in the admin
    (its trail names the admin) nor inside ``grants_recorded_elsewhere``; the signed-in person of a
    page, else None (a script, ``manage.py``: "system")."""
    request = _current_request()
    if _grants_recorded_elsewhere.get() or _page(request)[0] == ADMIN_NAMESPACE:
        return False, None
    return True, _signed_in(request)


def site_admin_grant_record(*, person: User, created: bool) -> None:
    """``auth.site_admin_granted``: a save made the person a site admin (``is_superuser``) outside
    the admin and the SAML sign-in."""
    ours, actor = _grant_actor()
    if ours:
        detail = {"how": "other", "user": person.username, "created": created}
        logbook_append(action="auth.site_admin_granted", actor=actor, detail=detail)


def membership_raised(*, before: dict[str, Any], membership: Membership) -> bool:
    """Whether a save gives more than the stored row (``before``: its role and ``can_approve``; empty
    for a new row) did: a higher role, or the approver's right."""
    role_before = ROLE_RANK.get(before.get("role", Membership.Role.NONE), 0)
    return ROLE_RANK.get(membership.role, 0) > role_before or (
        bool(membership.can_approve) and not before.get("can_approve", False)
    )


def membership_grant_record(*, before: dict[str, Any], membership: Membership, created: bool) -> None:
    """``account.membership_changed`` on the account's Logbook: a save raised a person's role there
    or made them an approver (``membership_raised``), outside the admin and the SAML sign-in; the role
    and the right, before and after."""
    ours, actor = _grant_actor()
    if not ours:
        return
    # By id: a row whose person or account is not there (a foreign key checked only at commit) fails
    # in the append's own check of the references written so far, with an IntegrityError.
    username = User.objects.filter(pk=membership.user_id).values_list("username", flat=True).first()
    account_id = AwsAccount.objects.filter(pk=membership.account_id).values_list("account_id", flat=True).first()
    logbook_append(
        action="account.membership_changed",
        actor=actor,
        account=account_id or "",
        detail={
            "how": "other",
            "user": username or "",
            "created": created,
            "role": [str(before.get("role", Membership.Role.NONE)), str(membership.role)],
            "can_approve": [bool(before.get("can_approve", False)), bool(membership.can_approve)],
        },
    )


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


def sign_in_failure_record(*, request: HttpRequest | None, credentials: dict[str, Any]) -> None:
    """A refused local sign-in, keyed by the client's address: ``wrong_password`` naming the person
    when the login is someone's, else ``unknown_login`` (what was typed may be a password)."""
    login = str(credentials.get("username") or credentials.get("email") or "")[:254]
    person = (
        User.objects.filter(username__iexact=login).first() or User.objects.filter(email__iexact=login).first()
        if login
        else None
    )
    detail: dict[str, Any] = {"method": "local"}
    if person is not None:
        detail["person"] = person.username
    reason = "wrong_password" if person is not None else "unknown_login"
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
