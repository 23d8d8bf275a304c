"""Which lookups a changelist's query string may ask for (``ModelAdmin.lookup_allowed``).

Django lets any lookup on a model's own fields through (``?name__startswith=…``): a way to read a
field out one character at a time from whether a row is listed, with nothing on record and, on a
large text column, a scan per guess. Two rules close it:

- no admin looks up a secret field (``fields.is_secret``, the one place that decides which are:
  a token's hash, a password hash, a second factor's sealed data);
- an evidence admin (``EvidenceAdminMixin``: recordings and their transcripts, whose every read is a
  ``recording.viewed`` entry) takes only the lookups of its own list filters and date hierarchy.

And a time compared with a date-time field must be one the database takes (``unstorable_time_lookup``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.admin import ModelAdmin, SimpleListFilter
from django.core.exceptions import FieldDoesNotExist
from django.db.models import DateTimeField, Field, ForeignObjectRel, Model
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.utils.dateparse import parse_datetime

from audit.admin_trail.fields import is_secret
from core.times import TimeOutOfRange, utc_time


def _first_field(lookup: str) -> str:
    return lookup.split(LOOKUP_SEP, 1)[0]


def lookup_on_secret(model: type[Model], lookup: str) -> bool:
    """Whether the lookup starts at a secret field of the model."""
    try:
        field = model._meta.get_field(_first_field(lookup))
    except FieldDoesNotExist:
        return False  # Django refuses it as an unknown field
    return isinstance(field, Field | ForeignObjectRel) and is_secret(model, field)


def lookup_of_filters(model_admin: ModelAdmin[Any], lookup: str, request: HttpRequest | None) -> bool:
    """Whether the lookup starts at a field of one of the admin's list filters or its date hierarchy
    (a list filter class: its own parameter). Django's own check then holds a lookup through a
    relation to the filter's path."""
    fields: set[str] = set()
    if model_admin.date_hierarchy:
        fields.add(_first_field(model_admin.date_hierarchy))
    list_filter = model_admin.get_list_filter(request) if request is not None else model_admin.list_filter
    for item in list_filter:
        if isinstance(item, type) and issubclass(item, SimpleListFilter):
            if lookup == item.parameter_name:
                return True
        elif isinstance(item, list | tuple):
            fields.add(_first_field(str(item[0])))
        else:
            fields.add(_first_field(str(item)))
    return _first_field(lookup) in fields


def unstorable_time_lookup(model: type[Model], params: Mapping[str, str]) -> bool:
    """Whether a changelist's query string compares a date-time field with a time PostgreSQL cannot
    take (an offset past ±15:59, or one UTC moves out of years 1-9999: ``core.times``): a DataError,
    a 500, where the admin answers a bad lookup with its "?e=1" page."""
    for lookup, raw in params.items():
        field = _datetime_field(model, lookup)
        if field is None:
            continue
        for value in str(raw).split(","):  # __range and __in take several
            try:
                parsed = parse_datetime(value.strip()) if value.strip() else None
            except ValueError:
                continue  # well formed but no date (February 30th): Django's own validation refuses it
            if parsed is None:
                continue  # not a time: Django's own validation refuses it as before
            try:
                utc_time(parsed)
            except TimeOutOfRange:
                return True
    return False


def _datetime_field(model: type[Model], lookup: str) -> Field[Any, Any] | None:
    """The date-time field a lookup compares (its own, or through relations), if it is one."""
    parts = lookup.split(LOOKUP_SEP)
    current: Any = model
    field: Any = None
    for part in parts:
        if current is None:
            break
        try:
            field = current._meta.get_field(part)
        except (FieldDoesNotExist, AttributeError):
            break  # the rest is a lookup (gte, range, date...) or nothing Django knows
        current = field.related_model if field.is_relation else None
    return field if isinstance(field, DateTimeField) else None
