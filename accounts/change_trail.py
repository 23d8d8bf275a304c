"""Access-deciding state changed by a save outside the admin, on the record: one mechanism.

The models whose saved rows decide who gets in, how and under what approval (WATCHED: a person, a
membership (its person and account too), an AWS account, its approval policy, a SAML identity
provider, a person's SAML link (the NameID that signs in as them), a CLI token (whose it is, how
long it lives), a second factor) are
compared on their watched fields: read as stored before the save (``pre_save``, one query, only
when the save writes a watched field) and as saved (``post_save``). What differs is appended to
the Logbook as ``<thing>.changed`` (``person.changed``, ``membership.changed``, ``account.changed``,
``approval_policy.changed``, ``saml_idp.changed``, ``saml_identity.changed``, ``api_token.changed``,
``authenticator.changed``) with each field's
before and after, in the admin trail's form (``audit.admin_trail.fields``: a secret only named as
changed, a certificate by its fingerprint), loosening and tightening alike. The actor is the one the
save names (``changed_by``), else the signed-in person of the page, else "system" (a script,
``manage.py``). The entry is appended in the caller's transaction when there is one (the Logbook's
own rule), just after the row's save and the other receivers' work (``accounts.apps`` connects these
receivers last: a deactivation's ending of access locks its rows before the Logbook's head).

A change is recorded once: not here when it is made through the admin (its trail, ``admin.changed``,
records it with the admin as actor), nor inside ``changes_recorded_elsewhere()`` (a service that
writes its own entry: a SAML sign-in's ``auth.saml_synced``), nor the fields a save names in its
``_changes_recorded_elsewhere`` attribute (an account's new role while grants wait for it:
``account.role_changed``). A new row is recorded only when being made gives something
(``Watched.created``: a site admin, staff person or auditor, ``manage.py createsuperuser`` included;
a membership with a role or the approver's right; any AWS account, approval policy, identity
provider or SAML link; never a CLI token: ``cli.token_issued``), with ``"created": true`` and each
watched field as made. A deleted row (by itself, a queryset's delete(), or with the row it belonged
to: a person's memberships and SAML links, an account's policy) is recorded with ``"deleted": true``
and each watched field as it was; a second factor's removal is ``auth.mfa_removed``'s
(accounts.security_log), a CLI token's ``cli.token_revoked``. A queryset's update(), bulk_update()
and bulk_create(), which send none of these signals: accounts.change_trail_bulk; Django's groups and
permissions (join tables that send none either): accounts.change_trail_joins.

A second factor is compared on its secret material (the TOTP secret, the recovery codes' seed, a
passkey's credential, opened from their seal), never on its usage marks: a secret replaced in place
is a factor removed and another added (``second_factor_replaced``: accounts.signals revokes the CLI
tokens for it, whatever path saved it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from allauth.mfa.adapter import get_adapter
from allauth.mfa.models import Authenticator
from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save

from accounts.models import (
    ApiToken,
    ApprovalPolicy,
    AwsAccount,
    Membership,
    SamlIdentity,
    SamlIdentityProvider,
    User,
)
from accounts.security_log import ADMIN_NAMESPACE, current_page, current_request, signed_in_person
from audit.admin_trail.fields import changes, hidden, snapshot
from audit.admin_trail.records import describe
from audit.services import logbook_append
from core.sealing import SecretDecryptionError

_BEFORE = "_change_trail_before"
# A save's own mark (set on the instance by its caller): these fields' change is recorded elsewhere.
RECORDED_ELSEWHERE_ATTRIBUTE = "_changes_recorded_elsewhere"
SECOND_FACTOR_SECRET = "secret"  # noqa: S105  # nosec B105 (the name of a derived value, not a secret)
# The parts of an authenticator's data that are its secret: what a code or a key is made from.
_SECRET_KEYS = ("secret", "seed", "migrated_codes", "credential")


@dataclass(frozen=True)
class Watched:
    """What a model's save is compared on: its fields (None: all but ``left_out``) and derived values."""

    thing: str
    fields: tuple[str, ...] | None
    left_out: tuple[str, ...] = ()
    derived: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    # The stored field a derived value is read from: a save that does not write it changes none.
    derived_from: tuple[str, ...] = ()
    # Whether a new row is recorded: being made gives something (None: never).
    created: Callable[[Any], bool] | None = None
    # Whether a deleted row is recorded here (False: another entry says it).
    deleted: bool = True

    def field_names(self, model: type[models.Model]) -> tuple[str, ...]:
        if self.fields is not None:
            return self.fields
        return tuple(f.name for f in model._meta.concrete_fields if not f.primary_key and f.name not in self.left_out)


def _always(_row: Any) -> bool:
    return True


def _opened(value: Any) -> Any:
    """A sealed secret opened (``accounts.mfa``: sealing twice gives two texts for one secret)."""
    if not isinstance(value, str):
        return value
    try:
        return get_adapter().decrypt(value)
    except (SecretDecryptionError, ValueError):
        return value  # unreadable: compared as stored, still seen when it changes


def second_factor_secret(authenticator: Authenticator) -> Any:
    """The digest of an authenticator's secret material (the admin trail's Hidden: named, never shown)."""
    data = authenticator.data if isinstance(authenticator.data, dict) else {}
    material = {key: _opened(data[key]) for key in _SECRET_KEYS if key in data}
    return hidden(json.loads(json.dumps(material, sort_keys=True, default=str)))


WATCHED: dict[type[models.Model], Watched] = {
    # Not the password: auth.password_changed records it (accounts.security_log).
    # The email and its key: which users are one person (accounts.permissions.same_person), so who may
    # approve whose requests.
    User: Watched(
        "person",
        ("is_active", "is_staff", "is_superuser", "is_auditor", "identity_store", "email", "email_key"),
        # A site admin, a staff person (the admin's sign-in), an auditor (every account's Logbook).
        created=lambda person: bool(person.is_superuser or person.is_staff or person.is_auditor),
    ),
    # Its person and account too: a membership moved to another is another person's access.
    Membership: Watched(
        "membership",
        ("user", "account", "role", "can_approve", "principal_arn"),
        created=lambda membership: membership.role != Membership.Role.NONE or bool(membership.can_approve),
    ),
    AwsAccount: Watched(
        "account",
        (
            "account_id",
            "role_arn",
            "federated_role_arn",
            "regions",
            "cli_sessions",
            "require_session_join",
            "extra_forward_ports",
            "forward_destinations",
        ),
        created=_always,
    ),
    ApprovalPolicy: Watched("approval_policy", None, left_out=("account",), created=_always),
    SamlIdentityProvider: Watched("saml_idp", None, created=_always),
    # Which person a NameID of an identity store signs in as.
    SamlIdentity: Watched(
        "saml_identity",
        ("user", "identity_store", "name_id", "name_id_format", "idp_slug", "idp_entity_id"),
        created=_always,
    ),
    # Whose a CLI token is, how long it lives, which IdP's withdrawal ends it (not its use). Made and
    # revoked: cli.token_issued and cli.token_revoked.
    ApiToken: Watched("api_token", ("user", "expires_at", "idp_slug"), deleted=False),
    # Added and removed: auth.mfa_added and auth.mfa_removed (accounts.security_log).
    Authenticator: Watched(
        "authenticator",
        ("type", "user"),
        derived={SECOND_FACTOR_SECRET: second_factor_secret},
        derived_from=("data",),
        deleted=False,
    ),
}

_recorded_elsewhere: ContextVar[bool] = ContextVar("passport_changes_recorded_elsewhere", default=False)


@contextmanager
def changes_recorded_elsewhere() -> Iterator[None]:
    """The saves inside make changes their caller records in an entry of its own (a SAML sign-in's
    ``auth.saml_synced``): this module writes no second one."""
    token = _recorded_elsewhere.set(True)
    try:
        yield
    finally:
        _recorded_elsewhere.reset(token)


def _values(watched: Watched, obj: models.Model, names: tuple[str, ...], derived: bool) -> dict[str, Any]:
    values = snapshot(obj, names) if names else {}
    if derived:
        values.update({name: read(obj) for name, read in watched.derived.items()})
    return values


def _remember_before(
    sender: type[models.Model], instance: models.Model, update_fields: Any = None, **kwargs: Any
) -> None:
    watched = WATCHED[sender]
    written = tuple(name for name in watched.field_names(sender) if update_fields is None or name in update_fields)
    derived = bool(watched.derived) and (
        update_fields is None or any(name in update_fields for name in watched.derived_from)
    )
    before = None
    if instance.pk is not None and not kwargs.get("raw") and (written or derived):
        stored = sender._base_manager.filter(pk=instance.pk).first()
        if stored is not None:
            before = _values(watched, stored, written, derived)
    instance.__dict__[_BEFORE] = before


def saved_changes(instance: models.Model) -> dict[str, Any]:
    """What the save just made of the watched fields (admin trail form); {} for a new row."""
    before = instance.__dict__.get(_BEFORE)
    if not before:
        return {}
    watched = WATCHED[type(instance)]
    names = tuple(name for name in before if name not in watched.derived)
    after = _values(watched, instance, names, derived=any(name in watched.derived for name in before))
    return changes(before, after)


def second_factor_replaced(authenticator: Authenticator) -> bool:
    """Whether this save of an existing authenticator stored other secret material (not a usage mark)."""
    return SECOND_FACTOR_SECRET in saved_changes(authenticator)


def _actor(instance: models.Model) -> User | None:
    named = getattr(instance, "changed_by", None)
    return named if isinstance(named, User) else signed_in_person(current_request())


def made_changes(instance: models.Model) -> dict[str, Any]:
    """A new row's watched fields as made, in the form of a change from nothing; {} when being made
    gives nothing (``Watched.created``)."""
    watched = WATCHED[type(instance)]
    if watched.created is None or not watched.created(instance):
        return {}
    return changes({}, _values(watched, instance, watched.field_names(type(instance)), derived=False))


def recorded_by_a_service() -> bool:
    """Whether a service records what is saved now in an entry of its own (``changes_recorded_elsewhere``)."""
    return _recorded_elsewhere.get()


def trail_silent() -> bool:
    """Whether what is saved now is recorded by another entry: the admin's trail (admin.changed,
    admin.added, admin.deleted, naming the admin) or a service's own (``changes_recorded_elsewhere``)."""
    return _recorded_elsewhere.get() or current_page(current_request())[0] == ADMIN_NAMESPACE


def change_record(instance: models.Model, difference: dict[str, Any], *, actor: User | None, **marks: Any) -> None:
    """``<thing>.changed`` for this row: who and what it is, its ``changes``, and the ``marks``
    (``created``, ``deleted``, ``bulk``) that say how."""
    subject = describe(instance)
    detail = {**subject.detail(), "changes": difference, **marks}
    action = f"{WATCHED[type(instance)].thing}.changed"
    logbook_append(action=action, actor=actor, account=subject.account_id, detail=detail)


def _record_change(sender: type[models.Model], instance: models.Model, created: bool, **kwargs: Any) -> None:
    if kwargs.get("raw") or trail_silent():
        return
    difference = made_changes(instance) if created else saved_changes(instance)
    for name in getattr(instance, RECORDED_ELSEWHERE_ATTRIBUTE, ()):
        difference.pop(name, None)
    if difference:
        change_record(instance, difference, actor=_actor(instance), **({"created": True} if created else {}))


def _record_deletion(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """A row deleted (by itself, a queryset's delete() or with the row it belonged to): each watched
    field as it was, in the form of a change to nothing. In the deleting transaction."""
    if trail_silent():
        return
    watched = WATCHED[sender]
    difference = changes(_values(watched, instance, watched.field_names(sender), derived=False), {})
    change_record(instance, difference, actor=_actor(instance), deleted=True)


def connect() -> None:
    """Connect the trail's receivers (``accounts.apps``, after the other receivers of these models)."""
    for model, watched in WATCHED.items():
        label = model._meta.label_lower
        pre_save.connect(_remember_before, sender=model, dispatch_uid=f"passport_change_trail_before_{label}")
        post_save.connect(_record_change, sender=model, dispatch_uid=f"passport_change_trail_{label}")
        if watched.deleted:
            post_delete.connect(_record_deletion, sender=model, dispatch_uid=f"passport_change_trail_gone_{label}")
