"""The orderings of the request API's paged lists (cursor pagination: stable under inserts; a
cursor it did not hand out is a 404, ``core.api.PassportCursorPagination``)."""

from __future__ import annotations

from core.api import PassportCursorPagination


class NewestFirstPagination(PassportCursorPagination):
    ordering = ("-created_at", "-id")


class OldestFirstPagination(PassportCursorPagination):
    # The approval queue is first come, first served.
    ordering = ("created_at", "id")


class InstancePagination(PassportCursorPagination):
    ordering = ("name", "instance_id")
    page_size = 100
