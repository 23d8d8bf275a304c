"""Django's groups and permissions on the record (accounts.change_trail): whatever writes their join tables.

A person's groups and own permissions, and a group's permissions, decide what a staff person may do
in the admin (every ModelAdmin asks ``has_perm``). Their rows live in Django's join tables
(``User.groups.through``, ``User.user_permissions.through``, ``Group.permissions.through``), models
Django makes itself, which send no ``post_save`` or ``post_delete`` at all. So the join tables'
querysets are replaced (``connect``) by one that records each write: the related managers' ``add``,
``remove``, ``set`` and ``clear`` (from either side), and a script's ``through.objects.create()``,
``get_or_create()``, ``bulk_create()`` (whatever its conflict options: the rows' owners are read
before and after), ``update()`` and a queryset's ``delete()``. Each person (or group) whose field
the write changed is one ``person.changed`` with ``groups`` or ``user_permissions`` before and after
(``group.changed`` with ``permissions``). A group deleted takes its permissions from its members in
the same way (``group.changed`` with ``"deleted": true``).

Not covered: a join row saved or deleted by itself (``Through(user=..., group=...).save()``,
``row.delete()``), a write through ``_base_manager`` or raw SQL, which pass no queryset of these;
nothing in Passport writes them so.

As elsewhere in the trail: in the write's transaction, by the signed-in person of the page or
"system", never inside the admin (its trail records it) or ``changes_recorded_elsewhere()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.contrib.auth.models import Group
from django.db import models, transaction
from django.db.models.signals import post_delete

from accounts.change_trail import WATCHED, trail_silent
from accounts.models import User
from accounts.security_log import current_request, signed_in_person
from audit.admin_trail.fields import changes, snapshot
from audit.admin_trail.records import describe
from audit.services import logbook_append, logbook_batch

GROUP_THING = "group"
_Result = TypeVar("_Result")


def _joins() -> dict[type[models.Model], tuple[type[models.Model], str, str]]:
    """Each join table: the model whose field it is, that field's name, and what its entry is."""
    return {
        User.groups.through: (User, "groups", WATCHED[User].thing),
        User.user_permissions.through: (User, "user_permissions", WATCHED[User].thing),
        Group.permissions.through: (Group, "permissions", GROUP_THING),
    }


def _owner_column(through: type[models.Model]) -> str:
    """The join table's column that holds the owner's pk (``user_id``, ``group_id``)."""
    owner, name, _thing = _joins()[through]
    return str(owner._meta.get_field(name).m2m_column_name())  # type: ignore[union-attr]


def _recorded(
    through: type[models.Model], using: str, owner_ids: Iterable[Any], write: Callable[[], _Result]
) -> _Result:
    """Run ``write`` and record, for each owner named, its field before and after it."""
    pks = sorted({pk for pk in owner_ids if pk is not None})
    if not pks or trail_silent():
        return write()
    owner, name, thing = _joins()[through]
    with transaction.atomic(using=using), logbook_batch():
        rows = list(owner._base_manager.using(using).filter(pk__in=pks).order_by("pk"))
        before = [(row, snapshot(row, [name])) for row in rows]
        result = write()
        actor = signed_in_person(current_request())
        for row, was in before:
            difference = changes(was, snapshot(row, [name]))
            if difference:
                subject = describe(row)
                detail = {**subject.detail(), "changes": difference}
                logbook_append(action=f"{thing}.changed", actor=actor, account=subject.account_id, detail=detail)
    return result


class JoinQuerySet(models.QuerySet[Any]):
    """A join table's queryset whose writes go on the record (``_recorded``)."""

    def _owner_ids(self) -> list[Any]:
        return list(self.values_list(_owner_column(self.model), flat=True))

    def create(self, **kwargs: Any) -> Any:
        write = super().create
        owner_id = getattr(self.model(**kwargs), _owner_column(self.model))
        return _recorded(self.model, self.db, [owner_id], lambda: write(**kwargs))

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        write = super().bulk_create
        rows = list(objs)
        column = _owner_column(self.model)
        owner_ids = [getattr(row, column) for row in rows]
        return _recorded(self.model, self.db, owner_ids, lambda: write(rows, *args, **kwargs))

    def update(self, **kwargs: Any) -> int:
        write = super().update
        column = _owner_column(self.model)
        moved_to = [
            value.pk if isinstance(value, models.Model) else value
            for key, value in kwargs.items()
            if key in (column, column.removesuffix("_id"))
        ]
        return _recorded(self.model, self.db, [*self._owner_ids(), *moved_to], lambda: write(**kwargs))

    def delete(self) -> tuple[int, dict[str, int]]:
        write = super().delete
        return _recorded(self.model, self.db, self._owner_ids(), write)


def _join_manager_install(through: type[models.Model]) -> None:
    """Make ``JoinQuerySet`` the join table's ``objects`` and default manager (what the related
    managers write through), in place of the plain one Django gave it."""
    meta = through._meta
    meta.local_managers = [manager for manager in meta.local_managers if manager.name != "objects"]
    manager = JoinQuerySet.as_manager()
    manager.contribute_to_class(through, "objects")  # also expires the cached managers


def _record_group_deletion(sender: type[models.Model], instance: Group, **kwargs: Any) -> None:
    if trail_silent():
        return
    subject = describe(instance)
    detail = {**subject.detail(), "changes": changes({"name": instance.name}, {}), "deleted": True}
    logbook_append(action=f"{GROUP_THING}.changed", actor=signed_in_person(current_request()), detail=detail)


def connect() -> None:
    """Give the join tables their recording queryset and connect the group deletion's receiver
    (``accounts.apps``)."""
    for through in _joins():
        if not isinstance(through._default_manager.get_queryset(), JoinQuerySet):
            _join_manager_install(through)
    post_delete.connect(_record_group_deletion, sender=Group, dispatch_uid="passport_trail_group_gone")
