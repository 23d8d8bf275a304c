"""SAML sign-in after the signature checks: one use per assertion, the person, their memberships.

Groups give memberships and roles by the scheme in ``accounts.saml.groups``.

IAM principal: the AWS Role attribute (``accounts.saml.roles``) sets each membership's
principal ARN at every sign-in; a role for an account the person is no member of, or a role
the portal itself assumes, is refused and recorded (``auth.saml_role_refused``;
``accounts.saml.memberships``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.authentication import hash_token
from accounts.change_trail import changes_recorded_elsewhere
from accounts.email_keys import email_key
from accounts.models import Membership, SamlAssertionUse, SamlIdentity, User
from accounts.saml.attributes import email, names, new_username
from accounts.saml.config import IdentityProvider
from accounts.saml.groups import groups_to_grants
from accounts.saml.links import link_for_update, link_idp_bind, link_idp_identity, link_reading_alike
from accounts.saml.memberships import memberships_sync, principals_sync
from accounts.saml.name_ids import NAME_ID_FORMAT_MAX_LENGTH, NAME_ID_MAX_LENGTH, TRANSIENT, UNSPECIFIED, name_id_key
from accounts.saml.roles import saml_roles_parse
from accounts.signals import memberships_changed
from audit.refusals import logbook_append_aggregated
from audit.services import logbook_append, logbook_batch

logger = logging.getLogger(__name__)

# The checked result waits this long for the browser's finishing GET.
HANDOFF_SECONDS = 300


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


class SamlRecordedRefusal(SamlRefused):
    """A sign-in refused with an entry of its own in the Logbook (``action``, ``detail``), written
    after the sign-in's transaction rolled back: the refusal is on record though nothing else changed."""

    def __init__(self, reason: str, message: str, *, action: str, detail: dict[str, Any]) -> None:
        super().__init__(reason, message)
        self.action = action
        self.detail = detail


class _SignInCollided(Exception):
    """Another sign-in made the same person, or took the same username, between our look and our write."""


# A sign-in that met another is tried again this many times in all (the other's link is then found).
_ATTEMPTS = 3


def saml_person_sign_in(
    *, idp: IdentityProvider, name_id: str, attributes: dict[str, Any], name_id_format: str = ""
) -> User:
    """Find or create the person the IdP vouches for, and bring them up to date with its word.

    The link is (identity store, NameID key): an assertion from one store's IdP never reaches a
    person of the other store, whatever email it carries; an email-address or unspecified NameID
    finds its person whatever the case of its ASCII letters, any other only exactly, and a link made
    before Formats were kept only by its exact NameID (``accounts.saml.name_ids``). A transient
    NameID names no person: refused; so is one longer than Passport keeps (never cut to fit).
    A link belongs to the IdP that made it (its slug, entity id and admin row's nonce:
    ``accounts.saml.links.link_idp_bind``): another IdP of the same store whose NameIDs coincide,
    or another IdP given the link's slug since, is refused (and recorded), not handed the person.
    A site admin moves a link on purpose in the admin; a rename takes the links along. A new person
    is not made with the email of a deactivated one, nor with an email-like NameID that reads as
    another person's.
    """
    name_id = name_id or ""
    if len(name_id) > NAME_ID_MAX_LENGTH or len(name_id_format) > NAME_ID_FORMAT_MAX_LENGTH:
        raise SamlRefused(
            "malformed",
            f"{idp.name} sent a NameID (or NameID Format) longer than Passport keeps "
            f"({NAME_ID_MAX_LENGTH} and {NAME_ID_FORMAT_MAX_LENGTH} characters).",
            status=400,
        )
    if name_id_format == TRANSIENT:
        raise SamlRefused(
            "transient_name_id",
            f"{idp.name} sent a one-time (transient) NameID, which names a session, not a person. "
            "Its administrator must send a persistent NameID or the person's email address.",
        )
    # SAML core 8.3.1: a NameID without a Format is unspecified ("" is a link made before Formats were kept).
    name_id_format = name_id_format or UNSPECIFIED
    key = name_id_key(name_id, name_id_format)
    if not key:
        raise SamlRefused("no_name_id", "The assertion does not name the person.", status=400)
    for _ in range(_ATTEMPTS):
        try:
            return _person_sign_in(
                idp=idp, name_id=name_id, name_id_format=name_id_format, key=key, attributes=attributes
            )
        except SamlRecordedRefusal as refusal:
            logger.warning("SAML sign-in from %s refused: %s", idp.slug, refusal.action)
            logbook_append(action=refusal.action, actor=None, detail=refusal.detail)
            raise
        except _SignInCollided:
            continue
    raise SamlRefused(
        "busy", "Another sign-in for this person was under way at the same moment; sign in again.", status=409
    )


def _person_sign_in(
    *, idp: IdentityProvider, name_id: str, name_id_format: str, key: str, attributes: dict[str, Any]
) -> User:
    first, last = names(attributes)
    address = email(attributes)
    _email_of_internal_store_refused(idp, name_id, address)
    grants = groups_to_grants([str(group) for group in attributes.get("groups") or []])
    # The Logbook's head last (requests_app.services.lifecycle): the entries below are appended at
    # the end, after the access this sign-in ends has locked its rows.
    with transaction.atomic(), logbook_batch():
        link = link_for_update(store=idp.identity_store, name_id=name_id, name_id_format=name_id_format, key=key)
        created = link is None
        if link is None:
            link = _person_create(idp, name_id, name_id_format, attributes, address=address)
        user = link.user
        if not link_idp_bind(link, idp):
            # Another IdP given the link's slug since (a row deleted and added again, a settings
            # entry naming another entity id) is another IdP too: the record says which it was.
            bound = {"linked_entity_id": link.idp_entity_id or ""} if link.idp_slug == idp.slug else {}
            raise SamlRecordedRefusal(
                "linked_to_other_idp",
                "This person signs in to Passport through another identity provider; "
                "ask a Passport administrator if that has changed.",
                action="auth.saml_link_refused",
                detail={
                    "idp": idp.slug,
                    "linked_idp": link.idp_slug,
                    "identity_store": idp.identity_store,
                    "name_id": name_id[:500],
                    "user_id": user.pk,
                    **bound,
                },
            )
        if user.identity_store != idp.identity_store:
            raise SamlRefused(
                "identity_store_mismatch",
                f"This person belongs to the {user.get_identity_store_display()} store, not {idp.store_label}.",
            )
        if not user.is_active:
            raise SamlRefused("inactive", "This Passport account is disabled.")
        user.email = address or user.email
        user.first_name, user.last_name = (first, last) if (first or last) else (user.first_name, user.last_name)
        # What the person was, for the Logbook: the groups may have raised or lowered them.
        was = {"auditor_before": user.is_auditor, "site_admin_before": user.is_superuser, "staff_before": user.is_staff}
        user.is_auditor = grants.auditor
        site_admin = grants.site_admin and idp.identity_store == User.IdentityStore.INTERNAL
        user.is_staff = user.is_superuser = site_admin
        # What they are given is on record in auth.saml_synced, below (accounts.change_trail).
        with changes_recorded_elsewhere():
            user.save(update_fields=["email", "first_name", "last_name", "is_auditor", "is_staff", "is_superuser"])
            changes, touched = memberships_sync(user, grants.memberships)
            principals = principals_sync(user, saml_roles_parse([str(v) for v in attributes.get("aws_roles") or []]))
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
                **was,
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


def _person_create(
    idp: IdentityProvider, name_id: str, name_id_format: str, attributes: dict[str, Any], *, address: str
) -> SamlIdentity:
    """A new person and their link; refused (and recorded) when a deactivated person has their
    email, or when their email-like NameID reads as another person's.

    Deactivating a person must not be undone by their IdP naming them anew (another NameID, or the
    same in a form that once made another link): a new person whose email, or email-like NameID,
    is a deactivated person's is refused until an administrator decides. An email-like NameID that
    reads as another person's of the store ("straße@" beside "strasse@", a fullwidth letter, a quoted
    local part) is another mailbox, so it does not sign that person in; nor is it made a person
    beside them, to be taken for them: an administrator decides.
    """
    keys = {email_key(value) for value in (address, name_id) if "@" in value} - {""}
    deactivated = User.objects.filter(is_active=False, email_key__in=keys).values_list("pk", flat=True).first()
    if deactivated is not None:
        raise _person_refused(
            idp,
            name_id,
            "inactive",
            "This Passport account is disabled.",
            reason="a deactivated person has this email",
            deactivated_user_id=deactivated,
        )
    alike = link_reading_alike(store=idp.identity_store, name_id=name_id, name_id_format=name_id_format)
    if alike is not None:
        raise _person_refused(
            idp,
            name_id,
            "name_id_reads_alike",
            _ALIKE_MESSAGE,
            reason="another person of this store is linked to a NameID that reads alike",
            lookalike_user_id=alike,
        )
    user = User(
        username=new_username(attributes, name_id=name_id, address=address, store=idp.identity_store),
        identity_store=idp.identity_store,
    )
    user.set_unusable_password()
    link = SamlIdentity(
        identity_store=idp.identity_store,
        name_id=name_id,
        name_id_format=name_id_format,
        idp_slug=idp.slug,
        **link_idp_identity(idp),
    )

    def create() -> None:
        user.save()
        link.user = user
        link.save()

    _saved_or_collided(create)
    return link


_ALIKE_MESSAGE = (
    "Your identity provider names you in a way that reads like another person's sign-in to Passport; "
    "a Passport administrator must look at it."
)


def _email_of_internal_store_refused(idp: IdentityProvider, name_id: str, address: str) -> None:
    """Refused (and recorded): a customer store's IdP naming, as its person's email, a person of the
    internal store (a support engineer, a site admin).

    Users with one email are one person (``accounts.permissions.same_person``): stored, such an email
    would make the customer's person the provider's, who could then no longer decide that person's
    requests nor watch their sessions. Nor may it be dropped and the person signed in without it: if
    the two are one human, they could then approve their own requests. An administrator decides."""
    if not address or idp.identity_store == User.IdentityStore.INTERNAL:
        return
    internal = list(
        User.objects.filter(email_key=email_key(address), identity_store=User.IdentityStore.INTERNAL)
        .exclude(email_key="")
        .order_by("pk")
        .values_list("pk", flat=True)[:10]
    )
    if internal:
        raise _person_refused(
            idp,
            name_id,
            "email_of_internal_store",
            "This email belongs to a person of the internal identity store; this identity provider cannot "
            "sign anyone in with it. Ask an administrator.",
            reason="the email is an internal store person's",
            internal_user_ids=internal,
        )


def _person_refused(idp: IdentityProvider, name_id: str, code: str, message: str, **why: Any) -> SamlRefused:
    """A new person refused (``code`` for the refusal page's record), recorded as
    ``auth.saml_person_refused`` with why (``why["reason"]`` and the other person's id)."""
    detail = {"idp": idp.slug, "identity_store": idp.identity_store, "name_id": name_id[:500], **why}
    return SamlRecordedRefusal(code, message, action="auth.saml_person_refused", detail=detail)


def _saved_or_collided(save: Callable[[], None]) -> None:
    """``save`` in a savepoint; a unique row another sign-in wrote first is a collision, tried again."""
    try:
        with transaction.atomic():
            save()
    except IntegrityError:
        raise _SignInCollided from None


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
