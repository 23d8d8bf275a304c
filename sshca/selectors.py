"""Reads of the CA's state. Nothing here creates keys; see ``services.ca_keys_ensure``."""

from __future__ import annotations

from django.db.models import Case, IntegerField, QuerySet, Value, When

from sshca.models import CaKey

_STATE_ORDER = Case(
    When(state=CaKey.State.ACTIVE, then=Value(0)),
    When(state=CaKey.State.TRUSTED, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def ca_key_list(*, include_retired: bool = True, purpose: str = "user") -> QuerySet[CaKey]:
    """One CA's keys (the user CA's unless ``purpose="host"``), active first, then trusted,
    then retired; newest first within a state.

    ``private_key_encrypted`` is deferred: pages and the API never need it loaded.
    """
    keys = CaKey.objects.defer("private_key_encrypted").filter(purpose=purpose)
    if not include_retired:
        keys = keys.exclude(state=CaKey.State.RETIRED)
    return keys.annotate(state_order=_STATE_ORDER).order_by("state_order", "key_type", "-created_at", "-id")
