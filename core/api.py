"""API pieces the endpoints of every app share: the documented error responses."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse

ERROR_RESPONSES = {
    400: OpenApiResponse(description='Bad input: `{"field": ["message", ...]}`.'),
    403: OpenApiResponse(description='Not allowed: `{"detail": "message"}`.'),
    404: OpenApiResponse(description="Not found, or not visible to you."),
    409: OpenApiResponse(description='The request is in a state that does not allow this: `{"detail": "message"}`.'),
    429: OpenApiResponse(description='Too soon: `{"detail": "message"}`; Retry-After says how many seconds to wait.'),
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: ERROR_RESPONSES[code] for code in codes}
