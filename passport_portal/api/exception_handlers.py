"""How a broken request rule becomes an API response, for every app's endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import RequestRuleError

STATUS_FOR_RULE_CODE = {
    "invalid": status.HTTP_400_BAD_REQUEST,
    "forbidden": status.HTTP_403_FORBIDDEN,
    "conflict": status.HTTP_409_CONFLICT,
    "unavailable": status.HTTP_502_BAD_GATEWAY,
}


def rule_error_body(errors: dict[str, list[str]]) -> dict[str, Any]:
    """Per-field messages as DRF writes them; a message about the whole request is ``detail``."""
    if set(errors) == {"__all__"}:
        return {"detail": " ".join(errors["__all__"])}
    return {
        (api_settings.NON_FIELD_ERRORS_KEY if field == "__all__" else field): list(messages)
        for field, messages in errors.items()
    }


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestRuleError):
        # No set_rollback(): a refusal's Logbook entry must outlive the request (see lifecycle._deny).
        return Response(
            rule_error_body(exc.errors),
            status=STATUS_FOR_RULE_CODE.get(exc.code, status.HTTP_400_BAD_REQUEST),
        )
    return drf_exception_handler(exc, context)
