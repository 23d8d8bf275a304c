"""API pieces the endpoints of every app share: the documented error responses, and the cursor
pagination every paged list uses."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import DateTimeField, Field
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from core.times import utc_time

if TYPE_CHECKING:
    from collections.abc import Iterable

    from django.db.models import Model, QuerySet
    from rest_framework.pagination import Cursor
    from rest_framework.request import Request
    from rest_framework.views import APIView

ERROR_RESPONSES = {
    400: OpenApiResponse(description='Bad input: `{"field": ["message", ...]}`.'),
    403: OpenApiResponse(description='Not allowed: `{"detail": "message"}`.'),
    404: OpenApiResponse(description="Not found, or not visible to you."),
    409: OpenApiResponse(description='The request is in a state that does not allow this: `{"detail": "message"}`.'),
    429: OpenApiResponse(description='Too soon: `{"detail": "message"}`; Retry-After says how many seconds to wait.'),
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: ERROR_RESPONSES[code] for code in codes}


def choice_refusal(choices: Iterable[str]) -> str:
    """A ChoiceField's ``invalid_choice`` message in fixed words. DRF's own quotes the value it
    refuses, so the answer to a 1 MB value was 1 MB."""
    return "Choose one of: " + ", ".join(choices) + "."


class BoundedListField(serializers.ListField):
    """DRF's ListField, counting the items before it validates them. DRF checks ``max_length``
    only after validating each item, so a list of 90,000 bad items cost their validation and was
    answered with an error for each, as large as the body."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if self.max_length is not None and isinstance(data, list) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class PassportCursorPagination(CursorPagination):
    """DRF's cursor pagination (stable under inserts), refusing a cursor it did not hand out.

    A cursor is base64 the client sends back, so anyone can write one. DRF checks its offset and
    direction but passes its position (the first ordering field's value) to the query as it comes:
    a position that is not a time, compared with a timestamp, raised Django's ValidationError, and a
    NUL byte PostgreSQL's DataError, a 500 on every paged list. Here the position must read as a
    value of that field, or the cursor is a 404, as DRF answers any other cursor it cannot read; a
    time goes on to the query only as its UTC form (``core.times.utc_time``), or the cursor is a 404
    when UTC moves it out of years 1 to 9999.
    """

    _model: type[Model] | None = None

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: APIView | None = None
    ) -> list[Any] | None:
        self._model = queryset.model  # the ordering's first field is one of its fields (or an annotation)
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Cursor | None:
        cursor = super().decode_cursor(request)
        if cursor is None or cursor.position is None:
            return cursor
        position = str(cursor.position)  # a string as DRF reads it (its stubs say int)
        if "\x00" in position:
            raise NotFound(self.invalid_cursor_message)
        field = self._position_field()
        if field is None:
            return cursor
        try:
            value = field.to_python(position)
            if isinstance(field, DateTimeField) and isinstance(value, datetime):
                position = utc_time(value, offset_limit=False).isoformat()
        except (ValidationError, ValueError, TypeError, OverflowError):
            raise NotFound(self.invalid_cursor_message) from None
        return cursor._replace(position=position)  # type: ignore[arg-type]  # DRF's stubs say int

    def _position_field(self) -> Field[Any, Any] | None:
        """The model field of the ordering's first name (DRF sets ``ordering`` before it decodes)."""
        if self._model is None:
            return None
        try:
            field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
        except FieldDoesNotExist:
            return None  # an annotation: nothing reads the position but the database
        return field if isinstance(field, Field) else None
