from typing import Any

from django.http import HttpRequest

from accounts.permissions import can_review_logbook, is_approver_anywhere


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    if not user.is_authenticated:
        return {}
    return {
        "nav_can_approve": is_approver_anywhere(user),
        "nav_can_audit": can_review_logbook(user),
    }
