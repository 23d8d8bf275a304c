"""The orderings of the request API's paged lists (cursor pagination: stable under inserts)."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class NewestFirstPagination(CursorPagination):
    ordering = ("-created_at", "-id")


class OldestFirstPagination(CursorPagination):
    # The approval queue is first come, first served.
    ordering = ("created_at", "id")


class InstancePagination(CursorPagination):
    ordering = ("name", "instance_id")
    page_size = 100
