"""Request types for views that only signed-in people reach."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import User


class AuthenticatedRequest(HttpRequest):
    """An HttpRequest behind ``login_required``: ``user`` is a real person."""

    user: User
