"""The inventory of instances an approver sees, and syncing an account's from the cloud."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import permissions
from accounts.page_limits import person_write_limited
from accounts.typing import AuthenticatedRequest
from core.text import visible
from requests_app import selectors, services
from requests_app.models import SweepFailure

# Instances a page: enough to scan, bounded whatever the size of the fleet.
INVENTORY_PAGE_SIZE = 100


@login_required
def inventory(request: AuthenticatedRequest) -> HttpResponse:
    if not permissions.is_approver_anywhere(request.user):
        raise PermissionDenied
    syncable = set(permissions.approvable_accounts(request.user).values_list("pk", flat=True))
    accounts = list(permissions.visible_accounts(request.user).order_by("name"))
    # Instances gone from the cloud are shown only when asked for (?gone=1).
    show_gone = request.GET.get("gone") == "1"
    instances = selectors.inventory_list(user=request.user, include_gone=show_gone)
    # get_page takes any text: not a number is the first page, past the end the last.
    page = Paginator(instances, INVENTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "requests/inventory.html",
        {
            "page": page,
            "show_gone": show_gone,
            "gone_count": selectors.inventory_gone_count(user=request.user),
            "accounts": accounts,
            "problems": selectors.sweep_failures_by_account(kind=SweepFailure.Kind.INVENTORY, accounts=accounts),
            "syncable": syncable,
            "nav": "inventory",
        },
    )


@login_required
@require_POST
@person_write_limited
def inventory_sync(request: AuthenticatedRequest, account_pk: int) -> HttpResponse:
    account = get_object_or_404(permissions.approvable_accounts(request.user), pk=account_pk)
    try:
        result = services.inventory_sync_by_person(account=account, actor=request.user)
    except services.InventorySyncTooSoon as refused:
        messages.info(request, refused.message)
        return redirect("requests:inventory")
    if result.errors:
        # The cloud's words, kept as they came in the Logbook: shown here made visible.
        messages.error(request, f"Sync of {account.name} failed: {visible('; '.join(result.errors))}")
    else:
        messages.success(
            request, f"{account.name}: {result.seen} instances seen, {result.added} new, {result.gone} gone."
        )
    return redirect("requests:inventory")
