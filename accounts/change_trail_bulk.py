"""Access-deciding state written past the model signals, on the record as a save's is (accounts.change_trail).

- A queryset's ``update()`` of a watched field (``bulk_update()`` runs one per batch), on a person, a
  membership, an AWS account, its approval policy or an identity provider (their querysets:
  ``accounts.models.trailed``): the rows it matches are locked and read, updated (only those), read
  again, and each row that changed is one ``<thing>.changed`` with its fields before and after and
  ``"bulk": "update"``. An update of nothing watched (an account's inventory times) costs nothing more.
- A ``bulk_create()``: each row whose being made gives something (``Watched.created``) is one
  ``<thing>.changed`` with ``"created": true`` and ``"bulk": "create"``. One that may skip or
  overwrite rows (``ignore_conflicts``, ``update_conflicts``) does not say which it made or changed:
  it is refused (``NotSupportedError``); save() the rows, or update() them.
- Django's groups and permissions, which decide what a staff person may do in the admin (every
  ModelAdmin asks ``has_perm``): a person's groups or own permissions changed by ``add``,
  ``remove``, ``set`` or ``clear`` (from either side), ``person.changed`` with ``groups`` or
  ``user_permissions`` before and after; a group's permissions, ``group.changed`` with
  ``permissions``. A group deleted takes its permissions from its members in the same way
  (``group.changed`` with ``"deleted": true``).

As with saves: written in the caller's transaction (the entries appended at the end of the write's own
block, after its row locks), by the signed-in person of the page or "system", never inside the admin
(its trail records it) or ``changes_recorded_elsewhere()``. A migration's historical models are no
watched model: their writes are Django's own. Secrets are only named as changed (the admin trail's
``fields``); the password is not watched at all (``auth.password_changed`` is a save's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import Group
from django.db import NotSupportedError, models, transaction
from django.db.models.signals import m2m_changed, post_delete

from accounts.change_trail import WATCHED, change_record, made_changes, trail_silent
from accounts.models import User
from accounts.models.trailed import bulk_write_recorder_set
from accounts.security_log import current_request, signed_in_person
from audit.admin_trail.fields import changes, snapshot
from audit.admin_trail.records import describe
from audit.services import logbook_append, logbook_batch

GROUP_THING = "group"
_M2M_BEFORE = "_change_trail_m2m_before"


def _actor() -> User | None:
    return signed_in_person(current_request())


def _written(model: type[models.Model], values: dict[str, Any]) -> tuple[str, ...]:
    """The watched fields among those an update writes (named by field or column attribute)."""
    watched = WATCHED.get(model)
    if watched is None:
        return ()
    named = {model._meta.get_field(name).name for name in values}
    return tuple(name for name in watched.field_names(model) if name in named)


class _Recorder:
    """The recorder of bulk writes that ``accounts.models.trailed``'s querysets hand theirs to."""

    def updated(self, queryset: models.QuerySet[Any], values: dict[str, Any], write: Callable[[Any], int]) -> int:
        model = queryset.model
        written = _written(model, values)
        if not written or trail_silent():
            return write(queryset)
        rows = model._base_manager.using(queryset.db)
        with transaction.atomic(using=queryset.db), logbook_batch():
            pks = list(queryset.values_list("pk", flat=True))
            # Locked as read: what is recorded as before is what the update changed.
            # NO KEY, as an UPDATE of a non-key column locks: rows merely pointed at by an insert meanwhile
            # (a Logbook entry, a request) do not hold it up; by pk, so two bulk writes meet in one order.
            locked = rows.select_for_update(no_key=True).filter(pk__in=pks).order_by("pk")
            before = {row.pk: snapshot(row, written) for row in locked}
            count = write(queryset.filter(pk__in=pks))
            actor = _actor()
            for row in rows.filter(pk__in=pks).order_by("pk"):
                difference = changes(before.get(row.pk, {}), snapshot(row, written))
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


# Django's groups and permissions: (model the field is on, field name, what that model's entry is).
def _m2m_fields() -> dict[type[models.Model], tuple[type[models.Model], str, str]]:
    return {
        User.groups.through: (User, "groups", WATCHED[User].thing),
        User.user_permissions.through: (User, "user_permissions", WATCHED[User].thing),
        Group.permissions.through: (Group, "permissions", GROUP_THING),
    }


def _owners(
    owner: type[models.Model], name: str, instance: models.Model, reverse: bool, pk_set: Any
) -> list[models.Model]:
    """The rows whose field this change touches: the instance, or (from the other side) those named,
    or for a clear all those it is related to."""
    if not reverse:
        return [instance]
    rows = (
        owner._default_manager.filter(**{name: instance})
        if pk_set is None
        else owner._default_manager.filter(pk__in=pk_set)
    )
    return list(rows.order_by("pk"))


def _remember_m2m_before(
    sender: type[models.Model], instance: models.Model, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    if action not in ("pre_add", "pre_remove", "pre_clear") or trail_silent():
        return
    owner, name, _thing = _m2m_fields()[sender]
    instance.__dict__[_M2M_BEFORE] = [
        (row, snapshot(row, [name])) for row in _owners(owner, name, instance, reverse, pk_set)
    ]


def _record_m2m(sender: type[models.Model], instance: models.Model, action: str, **kwargs: Any) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    remembered = instance.__dict__.pop(_M2M_BEFORE, None)
    if remembered is None or trail_silent():
        return
    _owner, name, thing = _m2m_fields()[sender]
    actor = _actor()
    for row, before in remembered:
        difference = changes(before, snapshot(row, [name]))
        if difference:
            subject = describe(row)
            detail = {**subject.detail(), "changes": difference}
            logbook_append(action=f"{thing}.changed", actor=actor, account=subject.account_id, detail=detail)


def _record_group_deletion(sender: type[models.Model], instance: Group, **kwargs: Any) -> None:
    if trail_silent():
        return
    subject = describe(instance)
    detail = {**subject.detail(), "changes": changes({"name": instance.name}, {}), "deleted": True}
    logbook_append(action=f"{GROUP_THING}.changed", actor=_actor(), detail=detail)


def connect() -> None:
    """Install the recorder of bulk writes and connect the groups' and permissions' receivers
    (``accounts.apps``)."""
    bulk_write_recorder_set(recorder=_Recorder())
    for through in _m2m_fields():
        label = through._meta.label_lower
        m2m_changed.connect(_remember_m2m_before, sender=through, dispatch_uid=f"passport_trail_m2m_before_{label}")
        m2m_changed.connect(_record_m2m, sender=through, dispatch_uid=f"passport_trail_m2m_{label}")
    post_delete.connect(_record_group_deletion, sender=Group, dispatch_uid="passport_trail_group_gone")
