"""The Logbook over REST: the same filters and keyset pages as the review page, for auditors."""

from __future__ import annotations

from typing import Any

from django.utils.http import urlencode
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.forms import LogbookFilterForm
from audit.list_limits import LogbookPageThrottle
from audit.permissions import can_review_logbook
from audit.selectors import logbook_page

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class CanReviewLogbook(BasePermission):
    message = "Only auditors may review the Logbook."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_review_logbook(request.user)


class LogbookEntryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_label")
    actor_id = serializers.IntegerField(allow_null=True)
    action = serializers.CharField()
    account_id = serializers.CharField()
    request_id = serializers.IntegerField(allow_null=True)
    instance_ids = serializers.ListField(child=serializers.CharField(), source="instance_id_list")
    detail = serializers.JSONField()
    prev_hash = serializers.CharField()
    hash = serializers.CharField()


_ZONE = "UTC if no zone; an offset past ±15:59, or a time out of years 1 to 9999 in UTC, is a 400"
_FILTER_PARAMETERS = [
    OpenApiParameter("account", OpenApiTypes.STR, description="AWS account id (12 digits)."),
    OpenApiParameter("person", OpenApiTypes.STR, description="Actor's username as recorded ('system': workers)."),
    OpenApiParameter("request", OpenApiTypes.INT, description="Access request id."),
    OpenApiParameter("instance", OpenApiTypes.STR, description="One instance id, e.g. i-0123456789abcdef0."),
    OpenApiParameter("action", OpenApiTypes.STR, description="Exact action name, e.g. request.approved."),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description=f"Entries at or after this time ({_ZONE})."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description=f"Entries at or before this time ({_ZONE})."),
    OpenApiParameter("q", OpenApiTypes.STR, description="Text in the action, the actor or the detail."),
    OpenApiParameter("before", OpenApiTypes.INT, description="Cursor: entries older than this id."),
    OpenApiParameter("after", OpenApiTypes.INT, description="Cursor: entries newer than this id."),
    OpenApiParameter("limit", OpenApiTypes.INT, description=f"Page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})."),
]


class LogbookListApi(APIView):
    permission_classes = [IsAuthenticated, CanReviewLogbook]
    # Reads only (the default throttle counts changes): each page a person reads counts (audit.list_limits).
    throttle_classes = [LogbookPageThrottle]

    class LimitInput(serializers.Serializer):
        limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)

    @extend_schema(
        operation_id="logbook_list",
        parameters=_FILTER_PARAMETERS,
        responses={
            200: inline_serializer(
                "LogbookPage",
                {
                    "next": serializers.URLField(allow_null=True, help_text="Older entries."),
                    "previous": serializers.URLField(allow_null=True, help_text="Newer entries."),
                    "results": LogbookEntryOutput(many=True),
                },
            ),
            400: OpenApiResponse(description='Bad filter: `{"field": ["message", ...]}`.'),
            403: OpenApiResponse(description="Not an auditor."),
            429: OpenApiResponse(description="Too many pages in one minute; Retry-After says how long to wait."),
        },
    )
    def get(self, request: Request) -> Response:
        form = LogbookFilterForm(request.query_params)
        limit_input = self.LimitInput(data=request.query_params)
        form_valid, limit_valid = form.is_valid(), limit_input.is_valid()
        if not (form_valid and limit_valid):
            raise ValidationError({**form.errors_by_field(), **limit_input.errors})
        filters = form.to_filters()
        before, after = form.cursor
        limit = limit_input.validated_data["limit"]
        page = logbook_page(user=request.user, filters=filters, size=limit, before=before, after=after)

        params = filters.as_params()
        if "limit" in request.query_params:
            params["limit"] = str(limit)

        def link(**cursor: int) -> str:
            query: dict[str, str | int] = {**params, **cursor}
            return request.build_absolute_uri(f"{request.path}?{urlencode(query)}")

        return Response(
            {
                "next": link(before=page.older_cursor) if page.older_cursor is not None else None,
                "previous": link(after=page.newer_cursor) if page.newer_cursor is not None else None,
                "results": LogbookEntryOutput(page.entries, many=True).data,
            }
        )
