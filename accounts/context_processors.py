from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.permissions import can_review_logbook, is_approver_anywhere, may_request_anywhere


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    if not user.is_authenticated:
        return {}
    return {
        "nav_can_approve": is_approver_anywhere(user),
        "nav_can_audit": can_review_logbook(user),
        # Lazy: read only where a page's nav shows it, not for htmx fragments.
        "nav_can_request": SimpleLazyObject(lambda: may_request_anywhere(user)),
        # A local (break-glass) account has a password of its own, and may add TOTP to it; people
        # from an identity provider sign in there, so the person menu offers them neither.
        "nav_local_account": user.has_usable_password(),
    }
