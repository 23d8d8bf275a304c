"""Request types for views that only signed-in people reach."""

from __future__ import annotations

from typing import cast

from django.http import HttpRequest
from rest_framework.request import Request

from accounts.models import User


class AuthenticatedRequest(HttpRequest):
    """An HttpRequest behind ``login_required``: ``user`` is a real person."""

    user: User


def person(request: Request | HttpRequest) -> User:
    """The signed-in person of a DRF request (its permission classes guarantee one)."""
    return cast(User, request.user)
