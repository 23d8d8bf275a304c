"""Access-deciding state written past the model signals, on the record as a save's is (accounts.change_trail).

- A queryset's ``update()`` of a watched field (``bulk_update()`` runs one per batch), on a person, a
  membership, an AWS account, its approval policy, an identity provider, a SAML link or a CLI token
  (their querysets: ``accounts.models.trailed``): the rows it matches are locked and read, updated
  (only those), read again, and each row that changed is one ``<thing>.changed`` with its fields before and after and
  ``"bulk": "update"``. An update of nothing watched (an account's inventory times) costs nothing more.
- A ``bulk_create()``: each row whose being made gives something (``Watched.created``) is one
  ``<thing>.changed`` with ``"created": true`` and ``"bulk": "create"``. One that may skip or
  overwrite rows (``ignore_conflicts``, ``update_conflicts``) does not say which it made or changed:
  it is refused (``NotSupportedError``); save() the rows, or update() them.
- A person's email written by an ``update()`` (or ``bulk_update()``) moves its key too: each row's
  ``email_key`` is made from the email it now has, as ``User.save`` makes it (the key says which
  users are one person: ``accounts.permissions.same_person``); an ``update()`` of ``email_key`` alone
  gets the key of the row's email all the same. Inside the admin and ``changes_recorded_elsewhere()``
  too: the key is derived data, never anyone's choice. A key so moved sets off what a save's does
  (below: ``person_email_changed``, the approvals it discounts on the record).
- A person's password, "Active" flag, site admin or email key changed by an ``update()`` sets off, for
  each row it changed, what a save of it does (``accounts.signals.person_saved_react``: the CLI tokens revoked,
  ``auth.password_changed``, a deactivated person's live access ended, the approvals that stop
  counting discounted), in the update's transaction, before that row's entry; inside the admin or
  ``changes_recorded_elsewhere()`` too, as a save's. So does an identity provider's switch, slug,
  certificate or entity id (``accounts.saml.withdrawal.saml_idp_saved_react``: its trust generation
  moved on, on the record in that row's entry, and what it vouched for ended).

Django's groups and permissions: accounts.change_trail_joins.

As with saves: written in the caller's transaction (the entries appended at the end of the write's own
block, after its row locks), by the signed-in person of the page or "system", never inside the admin
(its trail records it) or ``changes_recorded_elsewhere()``. A migration's historical models are no
watched model: their writes are Django's own. Secrets are only named as changed (the admin trail's
``fields``); the password is not watched (``auth.password_changed`` records it, above).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import NotSupportedError, models, transaction

from accounts.change_trail import WATCHED, change_record, made_changes, trail_silent
from accounts.email_keys import email_key
from accounts.models import SamlIdentityProvider, User
from accounts.models.trailed import bulk_write_recorder_set
from accounts.saml.withdrawal import IDP_WATCHED_FIELDS, saml_idp_saved_react
from accounts.security_log import current_request, signed_in_person
from accounts.signals import PERSON_WATCHED_FIELDS, person_saved_react
from audit.admin_trail.fields import changes, snapshot
from audit.services import logbook_batch


def _actor() -> User | None:
    return signed_in_person(current_request())


def _written(model: type[models.Model], values: dict[str, Any]) -> tuple[str, ...]:
    """The watched fields among those an update writes (named by field or column attribute)."""
    watched = WATCHED.get(model)
    if watched is None:
        return ()
    named = {model._meta.get_field(name).name for name in values}
    return tuple(name for name in watched.field_names(model) if name in named)


def _person_react(row: Any, before: dict[str, Any]) -> None:
    person_saved_react(person=row, before=before)


def _idp_react(row: Any, before: dict[str, Any]) -> None:
    saml_idp_saved_react(idp=row, before=before)


# The models whose save sets something off: the fields it reacts to, what reacts, and the fields
# the reaction itself moves on the row (on the record with the update's entry).
_REACTIONS: dict[type[models.Model], tuple[tuple[str, ...], Callable[[Any, dict[str, Any]], None], tuple[str, ...]]] = {
    User: (PERSON_WATCHED_FIELDS, _person_react, ()),
    SamlIdentityProvider: (IDP_WATCHED_FIELDS, _idp_react, ("trust_generation",)),
}


# Derived fields a save keeps in step with another (``User.save``): the field read, the field kept, how.
_Derived = tuple[str, str, Callable[[Any], Any]]
_DERIVED: dict[type[models.Model], tuple[_Derived, ...]] = {
    User: (("email", "email_key", email_key),),
}


def _derived(model: type[models.Model], values: dict[str, Any]) -> tuple[_Derived, ...]:
    """The derived fields an update must make again: those whose source (or themselves) it writes."""
    named = {model._meta.get_field(name).name for name in values} if model in _DERIVED else set()
    return tuple(entry for entry in _DERIVED.get(model, ()) if entry[0] in named or entry[1] in named)


def _derive(rows: models.QuerySet[Any], pks: list[Any], derived: tuple[_Derived, ...]) -> None:
    """Each updated row's derived fields made from what it now holds (through the plain manager: no second record)."""
    for source, target, make in derived:
        for pk, value in rows.filter(pk__in=pks).values_list("pk", source):
            rows.filter(pk=pk).update(**{target: make(value)})


def _reacting(model: type[models.Model], values: dict[str, Any]) -> tuple[str, ...]:
    """The fields among those an update writes whose change a save reacts to (a person's password,
    "Active" flag, site admin: ``accounts.signals.person_saved_react``; an identity provider's slug,
    switch, certificate, entity id: ``accounts.saml.withdrawal.saml_idp_saved_react``)."""
    if model not in _REACTIONS:
        return ()
    named = {model._meta.get_field(name).name for name in values}
    return tuple(name for name in _REACTIONS[model][0] if name in named)


class _Recorder:
    """The recorder of bulk writes that ``accounts.models.trailed``'s querysets hand theirs to."""

    def updated(self, queryset: models.QuerySet[Any], values: dict[str, Any], write: Callable[[Any], int]) -> int:
        model = queryset.model
        # The reactions are a save's whoever makes it (the admin's, a service's); the entries are not.
        derived = _derived(model, values)
        # A derived field is written whenever its source is (``_derive``): on the record and reacted to
        # as such (an email's new key joins or parts persons: ``person_email_changed``, as a save's).
        writes = {**values, **{target: None for _, target, _ in derived}}
        written = () if trail_silent() else _written(model, writes)
        reacting = _reacting(model, writes)
        if not written and not reacting and not derived:
            return write(queryset)
        if reacting and written:
            written = (*written, *(name for name in _REACTIONS[model][2] if name not in written))
        rows = model._base_manager.using(queryset.db)
        with transaction.atomic(using=queryset.db), logbook_batch():
            pks = list(queryset.values_list("pk", flat=True))
            # Locked as read: what is recorded as before is what the update changed.
            # NO KEY, as an UPDATE of a non-key column locks: rows merely pointed at by an insert meanwhile
            # (a Logbook entry, a request) do not hold it up; by pk, so two bulk writes meet in one order.
            locked = list(rows.select_for_update(no_key=True).filter(pk__in=pks).order_by("pk"))
            before = {row.pk: snapshot(row, written) for row in locked}
            stored = {row.pk: {name: getattr(row, name) for name in reacting} for row in locked}
            count = write(queryset.filter(pk__in=pks))
            _derive(rows, pks, derived)
            actor = _actor()
            for row in rows.filter(pk__in=pks).order_by("pk"):
                # As a save: its reactions first (a deactivation's ending of access), then its entry.
                was = stored.get(row.pk, {})
                if any(was[name] != getattr(row, name) for name in was):
                    _REACTIONS[model][1](row, was)
                difference = changes(before.get(row.pk, {}), snapshot(row, written)) if written else {}
                if difference:
                    change_record(row, difference, actor=actor, bulk="update")
        return count

    def created(self, model: type[models.Model], options: dict[str, Any], write: Callable[[], list[Any]]) -> list[Any]:
        if model not in WATCHED or trail_silent():
            return write()
        if options.get("ignore_conflicts") or options.get("update_conflicts"):
            raise NotSupportedError(
                f"{model._meta.label}: a bulk_create that may skip or overwrite rows is not on the record; "
                "save() the rows instead"
            )
        with transaction.atomic(using=model._default_manager.db), logbook_batch():
            made = write()
            actor = _actor()
            for row in made:
                difference = made_changes(row)
                if difference:
                    change_record(row, difference, actor=actor, created=True, bulk="create")
        return made


def connect() -> None:
    """Install the recorder of bulk writes (``accounts.apps``)."""
    bulk_write_recorder_set(recorder=_Recorder())
