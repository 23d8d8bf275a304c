"""Which lookups a changelist's query string may ask for (``ModelAdmin.lookup_allowed``).

Django lets any lookup on a model's own fields through (``?name__startswith=…``): a way to read a
field out one character at a time from whether a row is listed, with nothing on record and, on a
large text column, a scan per guess. Two rules close it:

- no admin looks up a secret field (``fields.is_secret``, the one place that decides which are:
  a token's hash, a password hash, a second factor's sealed data);
- an evidence admin (``EvidenceAdminMixin``: recordings and their transcripts, whose every read is a
  ``recording.viewed`` entry) takes only the lookups of its own list filters and date hierarchy.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import ModelAdmin, SimpleListFilter
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Field, ForeignObjectRel, Model
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest

from audit.admin_trail.fields import is_secret


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
