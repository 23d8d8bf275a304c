"""What every page's navigation needs from the requests app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from requests_app.selectors import approval_queue_count


def approvals_waiting(request: HttpRequest) -> dict[str, Any]:
    """``nav_approvals_waiting``: how many requests wait for this person's decision.

    A callable, so the count is asked for only where the nav shows it (for approvers, through
    requests/_approvals_count.html); a view that already knows the number passes it instead.
    """
    user = request.user
    if not user.is_authenticated:
        return {}
    count: Callable[[], int] = lambda: approval_queue_count(user=user)  # noqa: E731
    return {"nav_approvals_waiting": count}
