"""Admin columns and read-only fields for text a person, a host, an identity provider or the cloud
wrote: shown through ``core.text.visible``, as every portal page shows such text."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import display_for_field
from django.db import models

from core.text import visible


@functools.cache
def made_visible(model: type[models.Model], name: str, *, keep: str = "") -> Callable[[Any], str]:
    """The field as the admin shows it, with every hidden or reordering character as an escape
    (``core.text.visible``); named after the field, so its label, help text and column (and its
    sorting) stay. ``keep``: characters left as they are (newlines and tabs, for a block of output)."""
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)  # a column of the row, not a relation's other side

    @admin.display(description=field.verbose_name, ordering=name)
    def shown(obj: models.Model) -> str:
        return visible(display_for_field(getattr(obj, name), field, "-"), keep=keep)

    shown.__name__ = name
    return shown
