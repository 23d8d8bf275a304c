"""Writing admin changes to the Logbook: one entry per object added, changed or deleted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models

from audit.admin_trail.fields import changes, shown_fields
from audit.models import LogbookEntry
from audit.services import logbook_append

ADDED = "admin.added"
CHANGED = "admin.changed"
DELETED = "admin.deleted"
OBJECT_CHARS = 200


@dataclass(frozen=True)
class Subject:
    """What an entry is about, taken while the row still exists (a deleted row's __str__ may need its relations)."""

    model: str
    object_id: str
    label: str
    account_id: str
    via: str = ""

    def detail(self) -> dict[str, Any]:
        detail = {"model": self.model, "object_id": self.object_id, "object": self.label}
        if self.via:
            detail["via"] = self.via  # an inline row: the form it was edited in
        return detail


def _own_account_id(obj: object) -> str:
    """The AWS account id an object holds in a column of its own (an AWS account's row), else "".

    Duck-typed, as the Logbook sits below ``accounts``. A foreign key named ``account`` also
    gives its row an ``account_id`` attribute (the related pk), hence the check that the
    field found is not a relation.
    """
    meta = getattr(obj, "_meta", None)
    if meta is None:
        return ""
    try:
        field = meta.get_field("account_id")
    except FieldDoesNotExist:
        return ""
    value = getattr(obj, "account_id", "")
    return value if not field.is_relation and isinstance(value, str) else ""


def _account_id(obj: models.Model) -> str:
    """The AWS account an object belongs to, so the account's Logbook shows its admin changes too."""
    own = _own_account_id(obj)
    if own:
        return own
    if not any(field.name == "account" for field in obj._meta.fields):
        return ""
    try:
        account = getattr(obj, "account", None)
    except ObjectDoesNotExist:
        return ""
    return _own_account_id(account)


def describe(obj: models.Model, *, parent: models.Model | None = None) -> Subject:
    try:
        label = str(obj)[:OBJECT_CHARS]
    except ObjectDoesNotExist:
        label = f"{obj._meta.verbose_name} #{obj.pk}"
    return Subject(
        model=obj._meta.label_lower,
        object_id=str(obj.pk),
        label=label,
        account_id=_account_id(obj),
        via=f"{parent._meta.label_lower} #{parent.pk}" if parent is not None else "",
    )


def _actor(user: Any) -> AbstractUser | None:
    return user if isinstance(user, AbstractUser) else None


def admin_addition_record(*, actor: Any, subject: Subject, after: dict[str, Any]) -> LogbookEntry:
    return logbook_append(
        action=ADDED,
        actor=_actor(actor),
        account=subject.account_id,
        detail={**subject.detail(), "fields": shown_fields(after)},
    )


def admin_change_record(
    *, actor: Any, subject: Subject, before: dict[str, Any] | None, after: dict[str, Any]
) -> LogbookEntry | None:
    """The fields that differ, before and after; nothing is written when nothing changed."""
    if before is None:
        # A path that changed the row without showing it to us first: record where it ended up.
        detail = {**subject.detail(), "before": "(not captured)", "fields": shown_fields(after)}
    else:
        difference = changes(before, after)
        if not difference:
            return None
        detail = {**subject.detail(), "changes": difference}
    return logbook_append(action=CHANGED, actor=_actor(actor), account=subject.account_id, detail=detail)


def admin_deletion_record(
    *, actor: Any, subject: Subject, before: dict[str, Any], also_deleted: dict[str, int] | None = None
) -> LogbookEntry:
    """The row as it was; also_deleted counts, by model, the rows its deletion took with it."""
    detail = {**subject.detail(), "fields": shown_fields(before)}
    if also_deleted:
        detail["also_deleted"] = also_deleted
    return logbook_append(action=DELETED, actor=_actor(actor), account=subject.account_id, detail=detail)
