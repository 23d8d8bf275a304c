"""What is done to a request from its page: approve, reject, cancel, complete, extend; the decisive
ones asked again on a page of their own first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.models import User
from accounts.page_limits import person_write_limited_unless
from accounts.typing import AuthenticatedRequest
from core.dispatch import DispatchWatch, dispatch_watch
from core.errors import RequestRuleError
from requests_app import selectors, services
from requests_app.forms import DecisionForm, ExtendForm, RejectForm
from requests_app.models import (
    AccessRequest,
)
from requests_app.views.pages import _detail_context, _detail_page

# Decisive actions: their buttons lead to a page that says what will happen and asks again.
CONFIRMED_ACTIONS = frozenset({"reject", "cancel", "complete"})


def _confirm_action(request: AuthenticatedRequest, pk: int, action: str) -> HttpResponse:
    access_request, actions = selectors.access_request_get_with_actions(user=request.user, pk=pk)
    if action not in CONFIRMED_ACTIONS:
        return HttpResponseNotAllowed(["POST"])
    if not getattr(actions, action):
        # Nothing to confirm any more (decided elsewhere, or never theirs): the page says why.
        messages.error(request, getattr(actions, action).reason or "That action is not available.")
        return redirect("requests:detail", pk=pk)
    grants = list(access_request.grants.all())
    return render(
        request,
        "requests/confirm.html",
        {
            "req": access_request,
            "action": action,
            "grants": grants,
            "reject_form": RejectForm(),
            "nav": "approvals" if action == "reject" else "mine",
        },
    )


def _ends_access(request: HttpRequest, kwargs: dict[str, Any]) -> bool:
    """Completing or cancelling by someone who may: it only takes access away, never held back by
    the limit on changes (accounts.page_limits)."""
    user = request.user
    return isinstance(user, User) and selectors.access_request_may_end(
        user=user, pk=kwargs.get("pk"), action=str(kwargs.get("action"))
    )


@login_required
@require_http_methods(["GET", "POST"])
@person_write_limited_unless(_ends_access)
def request_action(request: AuthenticatedRequest, pk: int, action: str) -> HttpResponse:
    if request.method == "GET":
        return _confirm_action(request, pk, action)
    access_request = selectors.access_request_get(user=request.user, pk=pk)
    with dispatch_watch() as watch:
        response = _request_act(request, access_request, pk, action, watch=watch)
    if watch.deferred:
        # The change is saved; its work waits for the broker (the resume sweep hands it out).
        messages.warning(request, QUEUED_MESSAGE)
    return response


QUEUED_MESSAGE = (
    "The workers cannot be reached right now: the change is saved and its work is queued; "
    "it starts on its own once they are back."
)


def _request_act(
    request: AuthenticatedRequest, access_request: AccessRequest, pk: int, action: str, *, watch: DispatchWatch
) -> HttpResponse:
    try:
        if action == "approve":
            form = DecisionForm(request.POST)
            if not form.is_valid():
                shown, actions = selectors.access_request_get_with_actions(user=request.user, pk=pk)
                if actions.approve:  # the note is kept whole or not at all: the page again, with what was typed
                    return _detail_page(request, shown, _detail_context(shown, actions), decision=form)
            # Anyone else meets the service's refusal, which refuses such a note too: never approved without it.
            note = form.cleaned_data["note"] if form.is_valid() else request.POST.get("note", "")
            services.access_request_approve(access_request=access_request, approver=request.user, note=note)
            if watch.deferred:
                messages.success(request, f"Request #{pk} approved.")
            else:
                messages.success(request, f"Request #{pk} approved; provisioning has started.")
        elif action == "reject":
            reject = RejectForm(request.POST)
            # Only someone who may reject is sent back for a reason; anyone else meets the
            # service's refusal (and its Logbook entry) as before.
            if (
                not reject.is_valid()
                and selectors.access_request_actions(access_request=access_request, user=request.user).reject
            ):
                messages.error(request, "Give the requester a reason for the rejection (at most 256 characters).")
                return redirect("requests:action", pk=pk, action="reject")
            services.access_request_reject(
                access_request=access_request, approver=request.user, note=reject.cleaned_data.get("note", "")
            )
            messages.success(request, f"Request #{pk} rejected.")
        elif action == "cancel":
            services.access_request_cancel(access_request=access_request, actor=request.user)
            messages.success(request, f"Request #{pk} cancelled.")
        elif action == "complete":
            services.access_request_complete(access_request=access_request, actor=request.user)
            messages.success(request, f"Request #{pk} is completing: its users are being removed.")
        elif action == "extend":
            extend = ExtendForm(request.POST)
            if not extend.is_valid():
                raise RequestRuleError({"by": ["Choose how long to extend by."]})
            services.access_request_extend(
                access_request=access_request, actor=request.user, by=timedelta(minutes=extend.cleaned_data["minutes"])
            )
            messages.success(request, f"Request #{pk} extended by {extend.cleaned_data['minutes']} minutes.")
        else:
            raise PermissionDenied
    except RequestRuleError as error:
        for field_messages in error.errors.values():
            for message in field_messages:
                messages.error(request, message)
    return redirect("requests:detail", pk=pk)
