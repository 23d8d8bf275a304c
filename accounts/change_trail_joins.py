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
(``group.changed`` with ``permissions``). One call is one change: a related manager's ``set()``,
which Django runs as a ``remove()`` (or ``clear()``) and an ``add()``, is one entry for each person
whose groups it changed (none for one it took away and gave back), both sides' accessors having
a ``set()`` of their own (``_set_as_one_change``).

A group deleted is ``group.changed`` with ``"deleted": true``; the join rows Django deletes with it
(a cascade that passes no queryset of ours) are read before it goes, and each member is one
``person.changed`` with the group gone from ``groups``, after it, in the deletion's transaction. A
permission deleted (with its content type too) is the same for each person and group that held it.
Several deleted by one call (a queryset's ``delete()``) are one entry for each holder.

Not covered: a join row saved or deleted by itself (``Through(user=..., group=...).save()``,
``row.delete()``), a write through ``_base_manager`` or raw SQL, which pass no queryset of these;
nothing in Passport writes them so.

As elsewhere in the trail: in the write's transaction, by the signed-in person of the page or
"system", never inside the admin (its trail records it) or ``changes_recorded_elsewhere()``. But
for a group or permission deleted in the admin, the holders' entries are written all the same,
by the site admin: the admin's ``admin.deleted`` names only what was deleted, and counts the join
rows that went with it, so nothing else would say who lost it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.contrib.auth.models import Group, Permission
from django.db import models, router, transaction
from django.db.models.fields.related_descriptors import ManyToManyDescriptor
from django.db.models.signals import post_delete, pre_delete

from accounts.change_trail import WATCHED, recorded_by_a_service, trail_silent
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


@dataclass
class _Change:
    """One call's change of a join table: each owner's field as it was before the call first wrote
    its rows, recorded against what it is at the call's end."""

    through: type[models.Model]
    using: str
    before: dict[Any, tuple[models.Model, dict[str, Any]]] = field(default_factory=dict)

    def remember(self, owner_ids: Iterable[Any]) -> None:
        owner, name, _thing = _joins()[self.through]
        new = {pk for pk in owner_ids if pk is not None and pk not in self.before}
        for row in owner._base_manager.using(self.using).filter(pk__in=new):
            self.before[row.pk] = (row, snapshot(row, [name]))

    def record(self) -> None:
        """One ``<thing>.changed`` for each owner whose field is not what it was."""
        _owner, name, thing = _joins()[self.through]
        actor = signed_in_person(current_request())
        for pk in sorted(self.before):
            row, was = self.before[pk]
            difference = changes(was, snapshot(row, [name]))
            if difference:
                subject = describe(row)
                detail = {**subject.detail(), "changes": difference}
                logbook_append(action=f"{thing}.changed", actor=actor, account=subject.account_id, detail=detail)


# The changes under way in this context (``_one_change``): a write to their join table joins them.
_open_changes: ContextVar[tuple[_Change, ...]] = ContextVar("passport_join_changes", default=())


@contextmanager
def _one_change(through: type[models.Model], using: str) -> Iterator[_Change | None]:
    """The block's writes to ``through`` are one change: each owner whose field they changed is one
    entry, at the block's end, in its transaction (none when it raises). Inside another such block
    for the same table, they are that block's; in the admin or ``changes_recorded_elsewhere()``,
    nobody's (None)."""
    if trail_silent():
        yield None
        return
    under_way = next(
        (change for change in _open_changes.get() if change.through is through and change.using == using), None
    )
    if under_way is not None:
        yield under_way
        return
    change = _Change(through, using)
    with transaction.atomic(using=using), logbook_batch():
        token = _open_changes.set((*_open_changes.get(), change))
        try:
            yield change
        finally:
            _open_changes.reset(token)
        change.record()


def _recorded(
    through: type[models.Model], using: str, owner_ids: Iterable[Any], write: Callable[[], _Result]
) -> _Result:
    """Run ``write`` and record, for each owner named, its field before and after it (or, inside a
    call of a related manager's ``set()``, after that call)."""
    pks = [pk for pk in owner_ids if pk is not None]
    if not pks:
        return write()
    with _one_change(through, using) as change:
        if change is not None:
            change.remember(pks)
        return write()


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


def _set_as_one_change(manager_class: type[Any]) -> type[Any]:
    """A related manager class whose ``set()`` is one change: Django's runs a ``remove()`` and an
    ``add()`` (or a ``clear()`` and an ``add()``), which would be two entries for a person whose
    groups it swapped, or two for one it took away and gave back."""

    class OneChangeSet(manager_class):
        passport_one_change_set = True

        def set(self, objs: Iterable[Any], *, clear: bool = False, through_defaults: Any = None) -> None:
            with _one_change(self.through, router.db_for_write(self.through, instance=self.instance)):
                super().set(objs, clear=clear, through_defaults=through_defaults)

        set.alters_data = True  # type: ignore[attr-defined]

    OneChangeSet.__name__ = OneChangeSet.__qualname__ = manager_class.__name__
    return OneChangeSet


def _set_install(descriptor: ManyToManyDescriptor[Any, Any]) -> None:
    """Give a many-to-many accessor (either side) the related manager class of ``_set_as_one_change``
    (the descriptor builds its class once and keeps it as ``related_manager_cls``)."""
    manager_class = descriptor.related_manager_cls
    if not getattr(manager_class, "passport_one_change_set", False):
        descriptor.__dict__["related_manager_cls"] = _set_as_one_change(manager_class)


def _accessors() -> Iterator[ManyToManyDescriptor[Any, Any]]:
    """Both sides' accessors of each join table (``person.groups``, ``group.user_set`` ...)."""
    for owner, name, _thing in _joins().values():
        relation = owner._meta.get_field(name)
        if isinstance(relation, models.ManyToManyField):
            yield getattr(owner, name)
            yield getattr(relation.related_model, str(relation.remote_field.get_accessor_name()))


@dataclass
class _Deletion:
    """One deletion's groups and permissions (a ``Collector`` run), and what their join rows gave."""

    pending: set[tuple[type[models.Model], Any]] = field(default_factory=set)
    changes: dict[type[models.Model], _Change] = field(default_factory=dict)
    # Set at the first post_delete: every pre_delete of the run came before it.
    deleting: bool = False


_DELETION = "_passport_join_deletion"


def _deletion_of(origin: Any) -> _Deletion | None:
    deletion = getattr(origin, _DELETION, None)
    return deletion if isinstance(deletion, _Deletion) else None


def _remember_holders(
    sender: type[models.Model], instance: models.Model, using: str, origin: Any = None, **kwargs: Any
) -> None:
    """Before a group or permission goes: who holds it (its join rows go with it, deleted by Django
    as a cascade no queryset of ours sees), each owner's field as it is now. In the admin too: its
    ``admin.deleted`` names the group and counts the join rows, not who lost it."""
    if recorded_by_a_service():
        return
    key = origin if origin is not None else instance
    deletion = _deletion_of(key)
    if deletion is None or deletion.deleting or (sender, instance.pk) in deletion.pending:
        # A new run (one that failed may leave its own behind on the object tried again).
        deletion = _Deletion()
        setattr(key, _DELETION, deletion)
    deletion.pending.add((sender, instance.pk))
    for through, (owner, name, _thing) in _joins().items():
        relation = owner._meta.get_field(name)
        if relation.related_model is not sender:
            continue
        holders = through._base_manager.using(using).filter(
            **{relation.m2m_reverse_name(): instance.pk}  # type: ignore[union-attr]
        )
        change = deletion.changes.setdefault(through, _Change(through, using))
        change.remember(holders.values_list(_owner_column(through), flat=True))


def _record_holders(
    sender: type[models.Model], instance: models.Model, using: str, origin: Any = None, **kwargs: Any
) -> None:
    """After the run's last group or permission went: each owner whose field it changed is one
    ``person.changed`` (or ``group.changed``), in the deletion's transaction."""
    key = origin if origin is not None else instance
    deletion = _deletion_of(key)
    if deletion is None:
        return
    deletion.deleting = True
    deletion.pending.discard((sender, instance.pk))
    if deletion.pending:
        return
    delattr(key, _DELETION)
    with logbook_batch():
        for change in deletion.changes.values():
            change.record()


def _record_group_deletion(sender: type[models.Model], instance: Group, **kwargs: Any) -> None:
    if trail_silent():
        return
    subject = describe(instance)
    detail = {**subject.detail(), "changes": changes({"name": instance.name}, {}), "deleted": True}
    logbook_append(action=f"{GROUP_THING}.changed", actor=signed_in_person(current_request()), detail=detail)


def connect() -> None:
    """Give the join tables their recording queryset, both sides' accessors their one-change
    ``set()``, and connect the receivers of a group's or permission's deletion (``accounts.apps``)."""
    for through in _joins():
        if not isinstance(through._default_manager.get_queryset(), JoinQuerySet):
            _join_manager_install(through)
    for descriptor in _accessors():
        _set_install(descriptor)
    post_delete.connect(_record_group_deletion, sender=Group, dispatch_uid="passport_trail_group_gone")
    for target in (Group, Permission):
        label = target._meta.label_lower
        pre_delete.connect(_remember_holders, sender=target, dispatch_uid=f"passport_trail_holders_{label}")
        # After the group's own entry: the group gone, then what its members lost.
        post_delete.connect(_record_holders, sender=target, dispatch_uid=f"passport_trail_holders_gone_{label}")
