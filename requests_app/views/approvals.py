"""The approver's queue and the nav's count of what waits, both re-read by htmx."""

from __future__ import annotations

import hashlib

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.vary import vary_on_headers

from accounts import permissions
from accounts.typing import AuthenticatedRequest
from requests_app import selectors
from requests_app.views.pages import _approve_refusal

QUEUE_LIMIT = 200


def _queue_seen(rows: list[dict]) -> str:
    """What the approver's page shows, in a few characters: its poll is answered 204 while it holds.

    Each row's Approve counts: a requester's role lowered meanwhile changes the page."""
    shown = ",".join(f"{row['req'].pk}:{int(bool(row['actions'].approve))}" for row in rows)
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


@login_required
@vary_on_headers("HX-Request")  # one URL: the whole page, or the queue fragment its poll swaps in
def approval_queue(request: AuthenticatedRequest) -> HttpResponse:
    if not permissions.is_approver_anywhere(request.user):
        raise PermissionDenied
    queue = list(selectors.approval_queue(user=request.user)[:QUEUE_LIMIT])
    # Every row is on an account this person approves for (the queue's own filter).
    actions = selectors.access_request_actions_for_list(access_requests=queue, user=request.user, approves=True)
    rows = [
        {
            "req": access_request,
            "actions": actions[access_request.pk],
            "approve_refusal": _approve_refusal(actions[access_request.pk]),
        }
        for access_request in queue
    ]
    context = {
        "queue": queue,
        "rows": rows,
        "seen": _queue_seen(rows),
        # The nav's count, known here without asking again (the queue shows at most QUEUE_LIMIT).
        "nav_approvals_waiting": len(queue)
        if len(queue) < QUEUE_LIMIT
        else selectors.approval_queue_count(user=request.user),
        "nav": "approvals",
    }
    if request.headers.get("HX-Request") and request.GET.get("fragment") == "queue":
        # New requests appear and decided or withdrawn ones go without a reload (htmx polls this).
        if request.GET.get("seen") == context["seen"]:
            return HttpResponse(status=204)
        response = render(request, "requests/_approvals_queue.html", context)
        response["HX-Trigger"] = "approvals-changed"  # the nav's count follows at once
        return response
    return render(request, "requests/approvals.html", context)


@never_cache
@login_required
def approvals_count(request: AuthenticatedRequest) -> HttpResponse:
    """The nav's count of requests waiting for this person, re-read by htmx."""
    if not permissions.is_approver_anywhere(request.user):
        return render(request, "requests/_approvals_count.html", {"nav_approvals_waiting": 0})
    return render(request, "requests/_approvals_count.html")
