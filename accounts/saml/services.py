"""SAML sign-in after the signature checks: one use per assertion, the person, their memberships.

Groups give memberships and roles by the scheme in ``accounts.saml.groups``.

IAM principal: the AWS Role attribute (``accounts.saml.roles``) sets each membership's
principal ARN at every sign-in; a role for an account the person is no member of is refused
and recorded (``auth.saml_role_refused``).
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.authentication import hash_token
from accounts.models import AwsAccount, Membership, SamlAssertionUse, SamlIdentity, User
from accounts.saml.config import IdentityProvider
from accounts.saml.groups import groups_to_grants
from accounts.saml.roles import NamedRoles, saml_roles_parse
from accounts.signals import memberships_changed
from audit.refusals import logbook_append_aggregated
from audit.services import logbook_append, logbook_batch
from core.text import unsafe_characters, without_unsafe_characters

logger = logging.getLogger(__name__)

# The checked result waits this long for the browser's finishing GET.
HANDOFF_SECONDS = 300
_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")


class SamlRefused(Exception):
    """A response or message Passport will not act on; `reason` is a short code for the Logbook."""

    def __init__(self, reason: str, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def saml_assertion_claim(
    *, idp: IdentityProvider, assertion_id: str, acceptable_until: datetime, payload: dict[str, Any]
) -> str:
    """Record the assertion as used and park its checked content; returns the one-time handoff token.

    The unique (IdP, assertion id) row is what refuses a replay, in every process at once; it is
    kept until ``acceptable_until``, the latest time the assertion could be accepted again
    (accounts.saml.assertion).
    """
    if not assertion_id:
        raise SamlRefused("no_assertion_id", "The assertion has no ID.", status=400)
    now = timezone.now()
    expires_at = max(acceptable_until, now + timedelta(seconds=HANDOFF_SECONDS))
    SamlAssertionUse.objects.filter(expires_at__lt=now).delete()
    token = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            SamlAssertionUse.objects.create(
                idp_slug=idp.slug,
                assertion_id=assertion_id[:256],
                expires_at=expires_at,
                handoff_hash=hash_token(token),
                payload=payload,
            )
    except IntegrityError:
        raise SamlRefused("replayed", "This assertion was already used once; sign in again.") from None
    return token


def saml_handoff_take(*, idp: IdentityProvider, token: str) -> dict[str, Any]:
    """Hand the parked content over once, to the browser holding the token; then forget it."""
    if not token:
        raise SamlRefused("no_handoff", "The sign-in did not finish in this browser; sign in again.", status=400)
    fresh = timezone.now() - timedelta(seconds=HANDOFF_SECONDS)
    rows = SamlAssertionUse.objects.filter(
        handoff_hash=hash_token(token), idp_slug=idp.slug, consumed_at__isnull=True, received_at__gte=fresh
    )
    with transaction.atomic():
        row = rows.select_for_update().first()
        if row is None:
            raise SamlRefused("handoff_used", "This sign-in was already finished or has expired; sign in again.")
        payload = row.payload
        row.consumed_at = timezone.now()
        row.payload = {}
        row.save(update_fields=["consumed_at", "payload"])
    return payload


class SamlLinkTaken(SamlRefused):
    """The person this NameID names was linked through another IdP of the same store."""

    def __init__(self, *, link_idp: str, user_id: int) -> None:
        super().__init__(
            "linked_to_other_idp",
            "This person signs in to Passport through another identity provider; "
            "ask a Passport administrator if that has changed.",
        )
        self.link_idp = link_idp
        self.user_id = user_id


def _free_username(wanted: str, store: str) -> str:
    base = _USERNAME_UNSAFE.sub("-", wanted)[:120].strip("-.") or "person"
    candidates = [base, f"{base}-{store}"] + [f"{base}-{store}-{n}" for n in range(2, 50)]
    for candidate in candidates:
        if not User.objects.filter(username__iexact=candidate).exists():
            return candidate
    return f"{base}-{secrets.token_hex(4)}"


def _names(attributes: dict[str, Any]) -> tuple[str, str]:
    first, last = str(attributes.get("first_name") or ""), str(attributes.get("last_name") or "")
    if not (first or last) and attributes.get("display_name"):
        first, _, last = str(attributes["display_name"]).partition(" ")
    # Shown to approvers in pages, mails and the CLI: no characters that hide or reorder text, and
    # one line (a newline in a name would start a line of its own in a mail).
    return _one_line(first), _one_line(last)


def _one_line(name: str) -> str:
    return " ".join(without_unsafe_characters(name).split())[:150].strip()


def _email(attributes: dict[str, Any]) -> str:
    """The IdP's address for the person, or "" when it is not one address (a list, a newline
    with a header after it): it goes into mail headers, where one bad address stops the mail."""
    email = str(attributes.get("email") or "").strip()
    if not email:
        return ""
    try:
        validate_email(email)  # lets through a domain holding a bidi override
        if unsafe_characters(email):
            raise ValidationError("hidden characters")
    except ValidationError:
        logger.warning("the identity provider sent an email attribute that is not one address: %s", email[:254])
        return ""
    return email if len(email) <= 254 else ""


def saml_person_sign_in(*, idp: IdentityProvider, name_id: str, attributes: dict[str, Any]) -> User:
    """Find or create the person the IdP vouches for, and bring them up to date with its word.

    The link is (identity store, NameID): an assertion from one store's IdP never reaches a
    person of the other store, whatever email it carries. And a link belongs to the IdP that
    made it: another IdP of the same store whose NameIDs coincide is refused (and recorded),
    not handed the person. A site admin moves a link on purpose by changing its IdP in the admin.
    """
    if not name_id:
        raise SamlRefused("no_name_id", "The assertion does not name the person.", status=400)
    try:
        return _person_sign_in(idp=idp, name_id=name_id, attributes=attributes)
    except SamlLinkTaken as refusal:
        # After the rollback: the refusal is on record even though nothing else changed.
        logger.warning("SAML sign-in from %s refused: %s is linked through %s", idp.slug, name_id, refusal.link_idp)
        logbook_append(
            action="auth.saml_link_refused",
            actor=None,
            detail={
                "idp": idp.slug,
                "linked_idp": refusal.link_idp,
                "identity_store": idp.identity_store,
                "name_id": name_id[:500],
                "user_id": refusal.user_id,
            },
        )
        raise


def _person_sign_in(*, idp: IdentityProvider, name_id: str, attributes: dict[str, Any]) -> User:
    first, last = _names(attributes)
    email = _email(attributes)
    grants = groups_to_grants([str(group) for group in attributes.get("groups") or []])
    # The Logbook's head last (requests_app.services.lifecycle): the entries below are appended at
    # the end, after the access this sign-in ends has locked its rows.
    with transaction.atomic(), logbook_batch():
        link = (
            SamlIdentity.objects.select_related("user")
            # The link's row and the person's. FOR NO KEY UPDATE, not FOR UPDATE: a transaction
            # writing a row that refers to the person (their new request, an admin adding them to
            # an account) checks that reference at its commit, holding the Logbook's head by then;
            # it must not wait for this lock, whose holder waits for that head.
            .select_for_update(no_key=True)
            .filter(identity_store=idp.identity_store, name_id=name_id)
            .first()
        )
        if link is None:
            user = User(
                username=_free_username(str(attributes.get("username") or name_id.split("@")[0]), idp.identity_store),
                identity_store=idp.identity_store,
            )
            user.set_unusable_password()
            user.save()
            link = SamlIdentity.objects.create(
                user=user, identity_store=idp.identity_store, name_id=name_id, idp_slug=idp.slug
            )
            created = True
        else:
            user = link.user
            created = False
            if link.idp_slug != idp.slug:
                raise SamlLinkTaken(link_idp=link.idp_slug, user_id=user.pk)
        if user.identity_store != idp.identity_store:
            raise SamlRefused(
                "identity_store_mismatch",
                f"This person belongs to the {user.get_identity_store_display()} store, not {idp.store_label}.",
            )
        if not user.is_active:
            raise SamlRefused("inactive", "This Passport account is disabled.")
        user.email = email or user.email
        user.first_name, user.last_name = (first, last) if (first or last) else (user.first_name, user.last_name)
        user.is_auditor = grants.auditor
        site_admin = grants.site_admin and idp.identity_store == User.IdentityStore.INTERNAL
        user.is_staff = user.is_superuser = site_admin
        user.save(update_fields=["email", "first_name", "last_name", "is_auditor", "is_staff", "is_superuser"])
        changes, touched = _sync_memberships(user, grants.memberships)
        principals = _sync_principals(user, saml_roles_parse([str(v) for v in attributes.get("aws_roles") or []]))
        link.last_sign_in_at = timezone.now()
        link.save(update_fields=["last_sign_in_at"])
        logbook_append(
            action="auth.saml_synced",
            actor=user,
            detail={
                "idp": idp.slug,
                "identity_store": idp.identity_store,
                "created": created,
                "auditor": grants.auditor,
                "site_admin": site_admin,
                **changes,
                "principals_set": principals["set"],
                "principals_cleared": principals["cleared"],
            },
        )
        if grants.ambiguous:
            # Recorded, never guessed: the IdP's group must name the account by its id.
            logger.warning("SAML groups from %s name accounts ambiguously: %s", idp.slug, grants.ambiguous)
            logbook_append(
                action="auth.saml_group_ambiguous",
                actor=user,
                detail={"idp": idp.slug, "ambiguous": grants.ambiguous},
            )
        if principals["refused"]:
            logbook_append(
                action="auth.saml_role_refused",
                actor=user,
                detail={"idp": idp.slug, "refused": principals["refused"]},
            )
        if touched:
            # A group dropped or lowered: live access on that account ends unless still Admin.
            memberships_changed.send(
                sender=Membership, memberships=[(user.pk, pk) for pk in touched], actor=None, via="saml"
            )
    return user


def _sync_principals(user: User, named: NamedRoles) -> dict[str, Any]:
    """Each membership's IAM principal becomes the role the assertion names for its account.

    The role ARN's account id must be the membership's account: a role for an account the
    person holds no membership on is refused, never moved elsewhere. A ``saml`` membership
    whose account the assertion names no role for loses its principal (the IdP's word is
    the current one); an admin's ``local`` membership keeps the ARN it has.
    """
    memberships = list(Membership.objects.select_related("account").filter(user=user))
    by_account = {membership.account.account_id: membership for membership in memberships}
    refused = list(named.refused)
    for account_id, arn in named.by_account.items():
        if account_id not in by_account:
            refused.append({"value": arn[:300], "reason": f"no membership on account {account_id}"})
    set_arns: dict[str, str] = {}
    cleared: list[str] = []
    for membership in memberships:
        account_id = membership.account.account_id
        wanted = named.by_account.get(account_id)
        if wanted is None and membership.source == Membership.Source.SAML:
            wanted = ""
        if wanted is None or wanted == membership.principal_arn:
            continue
        membership.principal_arn = wanted
        membership.save(update_fields=["principal_arn"])
        if wanted:
            set_arns[account_id] = wanted
        else:
            cleared.append(account_id)
    return {"set": set_arns, "cleared": cleared, "refused": refused}


def _sync_memberships(user: User, wanted: dict[int, tuple[str, bool]]) -> tuple[dict[str, list[str]], list[int]]:
    """Bring the person's memberships in line with the groups. Returns what changed, for the
    Logbook, and the pks of the accounts whose membership was changed or removed."""
    existing = {m.account_id: m for m in Membership.objects.select_related("account").filter(user=user)}
    accounts = {a.pk: a for a in AwsAccount.objects.filter(pk__in=wanted)}
    added, changed, removed = [], [], []
    touched: list[int] = []
    for account_pk, (role, can_approve) in wanted.items():
        if role == Membership.Role.NONE and not can_approve:
            continue
        current = existing.get(account_pk)
        if current is None:
            Membership.objects.create(
                user=user, account_id=account_pk, role=role, can_approve=can_approve, source=Membership.Source.SAML
            )
            added.append(accounts[account_pk].account_id)
        elif (current.role, current.can_approve, current.source) != (role, can_approve, Membership.Source.SAML):
            current.role, current.can_approve, current.source = role, can_approve, Membership.Source.SAML
            current.save(update_fields=["role", "can_approve", "source"])
            changed.append(current.account.account_id)
            touched.append(account_pk)
    for account_pk, membership in existing.items():
        still = wanted.get(account_pk)
        if membership.source == Membership.Source.SAML and (
            still is None or (still[0] == Membership.Role.NONE and not still[1])
        ):
            removed.append(membership.account.account_id)
            touched.append(account_pk)
            membership.delete()
    return {"memberships_added": added, "memberships_changed": changed, "memberships_removed": removed}, touched


def saml_refusal_record(*, idp_slug: str, reason: str, source: str, errors: list[str] | None = None) -> None:
    """A refused SAML message goes to the Logbook with why (never the message itself).

    Anyone can post garbage to these endpoints, so refusals are aggregated per client
    address and reason (audit.refusals): the first of a window is written with its errors,
    the rest are counted. ``reason`` is one of this module's and the views' codes.
    """
    logbook_append_aggregated(
        action="auth.saml_refused",
        source=source,
        reason=f"{idp_slug}:{reason}",
        detail={"idp": idp_slug, "reason": reason, "errors": [error[:300] for error in (errors or [])[:10]]},
    )


def saml_sign_in_record(*, user: User, idp_slug: str) -> None:
    """A person signed in through an identity provider: the Logbook says which and from which store."""
    logbook_append(
        action="auth.signed_in",
        actor=user,
        detail={"method": "saml", "idp": idp_slug, "identity_store": user.identity_store},
    )


def saml_idp_sign_out_record(*, user: User, idp_slug: str) -> None:
    """The identity provider signed a person out of Passport (single logout started there)."""
    logbook_append(action="auth.signed_out", actor=user, detail={"by": "idp", "idp": idp_slug})
