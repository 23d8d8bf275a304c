"""The Django admin's changes, on the record.

Every ModelAdmin on the site is built with AuditedAdminMixin (the admin site adds it to any
class registered without it, see passport_portal.admin_site), and every inline with
AuditedInlineMixin. The mixin hooks the points every admin path goes through:

- the object as it was: when a POST loads it (get_object), or before a list edit saves it;
- added / changed: ModelAdmin.log_addition / log_change, which every add, change, list edit and
  password change calls once the row and its many-to-many fields are saved;
- inline rows: save_formset, before and after the formset saves;
- deleted: delete_model; actions (bulk delete included): each action, wrapped. A deletion also
  counts the rows that went with it (cascades), and is refused if evidence would go too.

Evidence (the Logbook, recordings, issued certificates, approvals) is read-only for everyone,
superusers included, and nothing that would cascade into it can be deleted. No changelist looks up
a secret field, and an evidence changelist only its own filters (admin_trail.lookups).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import NestedObjects
from django.db import models, router, transaction
from django.forms.models import BaseModelFormSet
from django.http import HttpRequest, HttpResponseBase
from django.utils.text import capfirst

from audit.admin_trail.fields import snapshot
from audit.admin_trail.lookups import lookup_of_filters, lookup_on_secret, unstorable_time_lookup
from audit.admin_trail.records import (
    Subject,
    admin_addition_record,
    admin_change_record,
    admin_deletion_record,
    describe,
)

# Records of what happened. The admin may show them, never change or delete them.
EVIDENCE_MODELS: frozenset[str] = frozenset(
    {
        "audit.logbookentry",
        "audit.logbookhead",
        "terminal.terminalsession",
        "sshca.issuedcertificate",
        "accounts.requestapproval",
    }
)

if TYPE_CHECKING:
    _ModelAdminBase = admin.ModelAdmin
    _InlineBase = admin.options.InlineModelAdmin
else:
    _ModelAdminBase = object
    _InlineBase = object

_BEFORE = "_admin_trail_before"
_CASCADE = "_admin_trail_cascade"


def is_evidence(model: type[models.Model]) -> bool:
    return model._meta.label_lower in EVIDENCE_MODELS


def _key(obj: models.Model) -> tuple[str, str]:
    return obj._meta.label_lower, str(obj.pk)


def _remembered(request: HttpRequest) -> dict[tuple[str, str], dict[str, Any]]:
    return request.__dict__.setdefault(_BEFORE, {})


def _reloaded(obj: models.Model) -> models.Model | None:
    """The row as the database has it now (the instance in hand may carry unsaved form input)."""
    return type(obj)._base_manager.filter(pk=obj.pk).first() if obj.pk is not None else None


def _remember(request: HttpRequest, obj: models.Model) -> None:
    store = _remembered(request)
    if _key(obj) not in store:
        row = _reloaded(obj)
        if row is not None:
            store[_key(obj)] = snapshot(row)


def _collected(objs: Any) -> dict[type[models.Model], Any]:
    """Every row that deleting objs would delete with them, by model (objs included)."""
    objs = list(objs)
    if not objs:
        return {}
    collector = NestedObjects(using=router.db_for_write(type(objs[0])))
    collector.collect(objs)
    return collector.model_objs  # type: ignore[return-value]


def _cascade(obj: models.Model) -> dict[str, int]:
    """How many rows of each model go with obj when it is deleted."""
    counts: dict[str, int] = {}
    for model, rows in _collected([obj]).items():
        others = [row for row in rows if not (type(row) is type(obj) and row.pk == obj.pk)]
        if others:
            counts[model._meta.label_lower] = len(others)
    return counts


_RowsBefore = dict[Any, tuple[Subject, dict[str, Any], tuple[str, str]]]


def _rows_before(rows: Any, *, parent: models.Model | None = None) -> _RowsBefore:
    return {row.pk: (describe(row, parent=parent), snapshot(row), _key(row)) for row in rows}


def _record_rows_after(
    request: HttpRequest, model: type[models.Model], before: _RowsBefore, *, parent: models.Model | None = None
) -> None:
    """Each row of `before` that is now gone or different, written down."""
    after = model._base_manager.in_bulk(list(before))
    cascades = request.__dict__.get(_CASCADE, {})
    for pk, (subject, values, key) in before.items():
        row = after.get(pk)
        if row is None:
            also_deleted = cascades.pop(key, None)
            admin_deletion_record(actor=request.user, subject=subject, before=values, also_deleted=also_deleted)
        else:
            admin_change_record(
                actor=request.user, subject=describe(row, parent=parent), before=values, after=snapshot(row)
            )


class AuditedAdminMixin(_ModelAdminBase):
    """Writes every add, change and delete made through this ModelAdmin to the Logbook."""

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        # Only a POST changes anything; its form has not touched the database yet.
        if obj is not None and request.method == "POST":
            _remember(request, obj)
        return obj

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:  # list_editable saves without get_object
            _remember(request, obj)
        super().save_model(request, obj, form, change)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        logged = super().log_addition(request, obj, message)
        row = _reloaded(obj) or obj
        admin_addition_record(actor=request.user, subject=describe(row), after=snapshot(row))
        return logged

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        logged = super().log_change(request, obj, message)
        before = _remembered(request).pop(_key(obj), None)
        row = _reloaded(obj) or obj
        admin_change_record(actor=request.user, subject=describe(row), before=before, after=snapshot(row))
        return logged

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        row = _reloaded(obj) or obj
        subject, before, also_deleted = describe(row), snapshot(row), _cascade(row)
        super().delete_model(request, obj)
        admin_deletion_record(actor=request.user, subject=subject, before=before, also_deleted=also_deleted)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        # The bulk delete action records each row (see _recorded_action); this adds what went with it.
        cascades = request.__dict__.setdefault(_CASCADE, {})
        for row in queryset.all():
            cascades[_key(row)] = _cascade(row)
        super().delete_queryset(request, queryset)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if not isinstance(formset, BaseModelFormSet):
            super().save_formset(request, form, formset, change)
            return
        parent = form.instance
        existing = [inline_form.instance.pk for inline_form in formset.initial_forms]
        before = _rows_before(formset.model._base_manager.filter(pk__in=existing), parent=parent)
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            row = _reloaded(obj) or obj
            admin_addition_record(actor=request.user, subject=describe(row, parent=parent), after=snapshot(row))
        _record_rows_after(request, formset.model, before, parent=parent)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # ?token_hash__startswith=... would read a secret out one character at a time (admin_trail.lookups).
        if lookup_on_secret(self.model, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        # ?started_at__gte=...+20:00 reached PostgreSQL (a DataError, a 500): the admin's "?e=1" instead.
        if unstorable_time_lookup(self.model, request.GET):
            raise IncorrectLookupParameters("a time the database cannot compare")
        return super().get_changelist_instance(request)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = {}
        for name, action in super().get_actions(request).items():
            if action is None:
                continue
            func, action_name, description = action
            actions[name] = (_recorded_action(func), action_name, description)
        return actions

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        # Inlines chosen per request are held to the same rule as those declared.
        return [audited_inline_class(inline) for inline in super().get_inlines(request, obj)]

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        evidence = [
            f"{capfirst(model._meta.verbose_name)}: {row}"
            for model, rows in _collected(objs).items()
            if is_evidence(model)
            for row in rows
        ]
        # A deletion that would take evidence with it is refused, like a protected relation.
        return deleted, model_count, perms_needed, [*protected, *evidence]


def _recorded_action(func: Callable[..., Any]) -> Callable[..., Any]:
    """An admin action that records what it changed or deleted, row by row, in its transaction."""
    if getattr(func, "admin_trail_recorded", False):
        return func

    @functools.wraps(func)
    def recorded(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: Any) -> HttpResponseBase | None:
        with transaction.atomic(using=router.db_for_write(modeladmin.model)):
            before = _rows_before(queryset.all())
            response = func(modeladmin, request, queryset)
            _record_rows_after(request, modeladmin.model, before)
        return response

    recorded.admin_trail_recorded = True  # type: ignore[attr-defined]
    return recorded


class AuditedInlineMixin(_InlineBase):
    """Marks an inline as saved through AuditedAdminMixin.save_formset (its parent records each row)."""


class ReadOnlyAdminMixin(_ModelAdminBase):
    """Read-only for everyone, superusers included: no add, change or delete, and no actions. Put
    before AuditedAdminMixin, whose actions it takes away."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}


class EvidenceAdminMixin(ReadOnlyAdminMixin):
    """Read-only (``ReadOnlyAdminMixin``). Its changelist filters by its own list filters and date
    hierarchy only: a lookup on what the evidence holds (?transcript__startswith=...) would read it
    out with no record of the reading."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if not lookup_of_filters(self, lookup, request):
            return False
        return super().lookup_allowed(lookup, value, request)


class EvidenceInlineMixin(_InlineBase):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@functools.cache
def audited_inline_class(inline: type[Any]) -> type[Any]:
    """The inline with the mixins it lacks (read-only when its model is evidence)."""
    mixins: list[type[Any]] = []
    if is_evidence(inline.model) and not issubclass(inline, EvidenceInlineMixin):
        mixins.append(EvidenceInlineMixin)
    if not issubclass(inline, AuditedInlineMixin):
        mixins.append(AuditedInlineMixin)
    if not mixins:
        return inline
    return type(inline.__name__, (*mixins, inline), {"__module__": inline.__module__})


def audited_admin_class(model: type[models.Model], admin_class: type[Any]) -> type[Any]:
    """The ModelAdmin with the mixins it lacks, and its inlines likewise."""
    mixins: list[type[Any]] = []
    if is_evidence(model) and not issubclass(admin_class, EvidenceAdminMixin):
        mixins.append(EvidenceAdminMixin)
    if not issubclass(admin_class, AuditedAdminMixin):
        mixins.append(AuditedAdminMixin)
    inlines = [audited_inline_class(inline) for inline in admin_class.inlines]
    if not mixins and inlines == list(admin_class.inlines):
        return admin_class
    namespace = {"__module__": admin_class.__module__, "inlines": inlines}
    return type(admin_class.__name__, (*mixins, admin_class), namespace)
