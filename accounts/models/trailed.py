"""The querysets of the models whose rows decide who gets in: their bulk writes go on the record too.

A queryset's ``update()`` (and ``bulk_update()``, which runs it) and ``bulk_create()`` send no model
signals, so the change trail's receivers (``accounts.change_trail``) never hear them. These querysets
hand each such write to the recorder that ``accounts.change_trail_bulk`` installs when the app is
ready (the models cannot import it: it imports them), which compares the rows before and after in
the write's own transaction. Until one is installed, and for a model it does not watch (a
migration's historical ones), the write is Django's own. A write through a model's
``_base_manager`` (a plain one) or in raw SQL passes none of these: nothing in Passport writes so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from django.contrib.auth.models import UserManager
from django.db import models

_Row = TypeVar("_Row", bound=models.Model)


class BulkWriteRecorder(Protocol):
    def updated(self, queryset: models.QuerySet[Any], values: dict[str, Any], write: Callable[[Any], int]) -> int:
        """Run ``write`` (the update, with ``values``, of ``queryset`` or a narrower one it is given)
        and record what it changed."""
        ...

    def created(self, model: type[models.Model], options: dict[str, Any], write: Callable[[], list[Any]]) -> list[Any]:
        """Run ``write`` (a bulk_create with these ``options``) and record the rows it made."""
        ...


_recorder: list[BulkWriteRecorder] = []


def bulk_write_recorder_set(*, recorder: BulkWriteRecorder) -> None:
    """Install the recorder of bulk writes (``accounts.change_trail_bulk.connect``); once."""
    _recorder[:] = [recorder]


class TrailedQuerySet(models.QuerySet[_Row]):
    def update(self, **kwargs: Any) -> int:
        if not _recorder:
            return super().update(**kwargs)
        return _recorder[0].updated(self, kwargs, lambda rows: rows.update_unrecorded(**kwargs))

    def update_unrecorded(self, **kwargs: Any) -> int:
        """Django's own update(): for the recorder, which records it."""
        return super().update(**kwargs)

    def bulk_create(self, objs: Iterable[_Row], *args: Any, **kwargs: Any) -> list[_Row]:
        if not _recorder:
            return super().bulk_create(objs, *args, **kwargs)
        names = ("batch_size", "ignore_conflicts", "update_conflicts", "update_fields", "unique_fields")
        options = {**dict(zip(names, args, strict=False)), **kwargs}
        rows = list(objs)
        return _recorder[0].created(self.model, options, lambda: self.bulk_create_unrecorded(rows, **options))

    def bulk_create_unrecorded(self, objs: list[_Row], **options: Any) -> list[_Row]:
        """Django's own bulk_create(): for the recorder, which records it."""
        return super().bulk_create(objs, **options)


class TrailedUserManager(UserManager.from_queryset(TrailedQuerySet)):  # type: ignore[misc]
    """Django's manager of people (create_user, create_superuser), on the trailed queryset. A
    migration's historical model gets it too (``use_in_migrations``), but is no model the trail
    watches: its writes are Django's own."""
