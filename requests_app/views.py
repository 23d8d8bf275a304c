"""HTML pages. Thin: read through selectors, change through services."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from accounts import permissions
from accounts.models import AwsAccount, User
from accounts.page_limits import person_write_limited, person_write_limited_unless
from accounts.typing import AuthenticatedRequest
from core.dispatch import DispatchWatch, dispatch_watch
from core.errors import RequestRuleError
from core.htmx import htmx_refusal
from core.text import visible
from requests_app import selectors, services
from requests_app.forms import AccessRequestForm, DecisionForm, ExtendForm, InstancePickerForm, RejectForm
from requests_app.iam import iam_accounts_without_principal
from requests_app.models import (
    GRANT_STATES_NEEDING_CLEANUP,
    AccessRequest,
    Grant,
    GrantStatus,
    RequestStatus,
)
from requests_app.rules import RequestActions, extension_left

# While a request is in one of these, its page refreshes itself.
LIVE_PAGE_STATUSES = frozenset(status for status in RequestStatus if not status.is_terminal)


@login_required
def request_list(request: AuthenticatedRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in RequestStatus.values:
        status = ""
    page = Paginator(selectors.access_request_list(user=request.user, status=status or None), 25).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "requests/list.html",
        {"page": page, "status": status, "statuses": RequestStatus.choices, "nav": "mine"},
    )


@login_required
@person_write_limited
def request_create(request: AuthenticatedRequest) -> HttpResponse:
    form = AccessRequestForm(request.POST or None, user=request.user, initial={"duration": 60})
    if request.method == "POST" and form.is_valid():
        try:
            access_request = services.access_request_create(
                requester=request.user,
                account=form.cleaned_data["account"],
                instances=list(form.cleaned_data["instances"]),
                reason=form.cleaned_data["reason"],
                ticket=form.cleaned_data["ticket"],
                duration=form.duration_value,
                admin_rights=form.cleaned_data["admin_rights"],
            )
        except RequestRuleError as error:
            form.apply_rule_error(error)
        else:
            messages.success(request, f"Request #{access_request.pk} submitted; approvers have been asked.")
            return redirect("requests:detail", pk=access_request.pk)
    accounts = list(permissions.requestable_accounts(request.user))
    # Said before the form is filled in: where IAM cannot be asked about this person, they cannot ask.
    blocked = iam_accounts_without_principal(user=request.user, accounts=accounts)
    open_accounts = [a for a in accounts if a.pk not in blocked]
    selected = form["account"].value() or (open_accounts[0].pk if open_accounts else None)
    account = next((a for a in open_accounts if str(a.pk) == str(selected)), None)
    return render(
        request,
        "requests/create.html",
        {
            "form": form,
            "accounts": accounts,
            "blocked": blocked,
            "can_ask": bool(open_accounts),
            "picker": _picker_context(request, account, checked=form["instances"].value() or []),
            "nav": "create",
        },
    )


def _picker_context(
    request: AuthenticatedRequest, account: AwsAccount | None, checked: list[str], search: str = ""
) -> dict:
    if account is None:
        return {"rows": [], "account": None}
    instances = selectors.requestable_instances(user=request.user, account=account, search=search)
    checked_ids = {str(value) for value in checked}
    rows = [
        {
            "instance": instance,
            "problem": services.instance_problem(instance),
            "checked": str(instance.pk) in checked_ids,
        }
        for instance in instances
    ]
    # What is ticked survives a search that hides it: those ride along as hidden inputs, and the
    # summary lists every selected instance, shown or not.
    selected = list(
        selectors.requestable_instances(user=request.user, account=account).filter(
            # The create form's POST carries them unchecked: only plain pks reach the query.
            pk__in=[value for value in checked_ids if value.isascii() and value.isdigit() and len(value) <= 18]
        )
    )
    shown = {instance.pk for instance in instances}  # the queryset is already evaluated by the rows
    hidden = [instance for instance in selected if instance.pk not in shown]
    return {"rows": rows, "account": account, "search": search, "selected": selected, "hidden": hidden}


@login_required
def instance_picker(request: AuthenticatedRequest) -> HttpResponse:
    """The instance list for the create form, re-rendered by htmx as the account or search changes."""
    query = InstancePickerForm(request.GET)
    if not query.is_valid():
        return HttpResponseBadRequest("Invalid instance query.", content_type="text/plain")
    account = get_object_or_404(permissions.requestable_accounts(request.user), pk=query.cleaned_data["account"])
    checked = [value for value in query.cleaned_data["instances"] if value != str(query.cleaned_data["remove"])]
    picker = _picker_context(request, account, checked=checked, search=query.cleaned_data["q"])
    return render(request, "requests/_picker.html", {"picker": picker})


def _detail_context(access_request: AccessRequest, actions: RequestActions) -> dict:
    grants = list(access_request.grants.all())
    # The account's policy is read again only where the extend control is shown: its choices fit
    # what the policy allows, at least the shortest extension whenever ``actions.extend`` allows one.
    extension_room = (
        selectors.access_request_extension_left(access_request=access_request)
        if actions.extend
        else extension_left(access_request)
    )
    live = access_request.status in LIVE_PAGE_STATUSES or (
        access_request.status == RequestStatus.FAILED and any(grant.status == GrantStatus.REMOVING for grant in grants)
    )
    return {
        "req": access_request,
        "grants": grants,
        "actions": actions,
        "live": live,
        "ready_count": sum(grant.status == GrantStatus.READY for grant in grants),
        "cleanup_count": sum(grant.status in GRANT_STATES_NEEDING_CLEANUP for grant in grants),
        "extend_form": ExtendForm(left=extension_room),
        # Why the requester of running access can have no more: the 12 h or the account's policy.
        "extend_refusal": actions.extend.reason if actions.extend.code == "invalid" else "",
        # Why an approver who may decide cannot approve: the requester is no longer an Admin of the account.
        "approve_refusal": _approve_refusal(actions),
        "max_total": services.MAX_TOTAL_DURATION,
        "remaining_extension": extension_room,
        "seen": _status_seen(access_request, grants),
    }


def _approve_refusal(actions: RequestActions) -> str:
    """Why the person may reject the request but not approve it (shown in place of Approve), or ""."""
    return actions.approve.reason if actions.reject and not actions.approve else ""


def _status_seen(access_request: AccessRequest, grants: list[Grant]) -> str:
    """What a page's status poll has seen: the request's status, then each grant's (``active:4=ready,5=provisioning``).

    A page that loaded as Active while a grant was still provisioning must hear of that grant's Ready too.
    """
    return f"{access_request.status}:" + ",".join(f"{grant.pk}={grant.status}" for grant in grants)


@login_required
@vary_on_headers("HX-Request")  # one URL: the whole page, or the status fragment its poll swaps in
def request_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    access_request, actions = selectors.access_request_get_with_actions(user=request.user, pk=pk)
    context = _detail_context(access_request, actions)
    if request.headers.get("HX-Request") and request.GET.get("fragment") == "status":
        seen = request.GET.get("seen", "")
        if seen.partition(":")[0] != access_request.status:
            # The request moved on: reload the whole page so its actions match the new state.
            response = HttpResponse(status=204)
            response["HX-Refresh"] = "true"
            return response
        if (
            seen == context["seen"]
            and access_request.status == RequestStatus.ACTIVE
            and not any(grant.status in (GrantStatus.PENDING, GrantStatus.PROVISIONING) for grant in context["grants"])
        ):
            return HttpResponse(status=204)  # nothing moved: keep the page (and a revealed password) as it is
        return render(request, "requests/_status.html", context)
    return _detail_page(request, access_request, context)


def _detail_page(
    request: AuthenticatedRequest, access_request: AccessRequest, context: dict, decision: DecisionForm | None = None
) -> HttpResponse:
    """The request's page; ``decision``: an approval refused for its note, shown again with why (a 400)."""
    # Of a request that needs several approvals: which given ones count now (the page, not the polls).
    approvals = selectors.access_request_approvals(access_request=access_request)
    context = {**context, "nav": "mine", "approvals": approvals, "decision_form": decision or DecisionForm()}
    return render(request, "requests/detail.html", context, status=400 if decision else 200)


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


@login_required
def inventory(request: AuthenticatedRequest) -> HttpResponse:
    if not permissions.is_approver_anywhere(request.user):
        raise PermissionDenied
    syncable = set(permissions.approvable_accounts(request.user).values_list("pk", flat=True))
    accounts = permissions.visible_accounts(request.user).order_by("name")
    return render(
        request,
        "requests/inventory.html",
        {
            "instances": selectors.inventory_list(user=request.user),
            "accounts": accounts,
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


@never_cache
@login_required
@require_POST
@person_write_limited
def grant_password(request: AuthenticatedRequest, pk: int, grant_pk: int) -> HttpResponse:
    """Reveal a Windows password on demand (htmx swaps it into the grant's row); each reveal is logged."""
    access_request = selectors.access_request_get(user=request.user, pk=pk)
    grant = get_object_or_404(access_request.grants.select_related("instance", "request"), pk=grant_pk)
    try:
        password = services.grant_reveal_password(grant=grant, user=request.user)
    except RequestRuleError as error:
        # One line, shown beside the button (static/js/passport.js): htmx swaps no refusal in.
        return htmx_refusal(str(error), status=403 if error.code == "forbidden" else 409)
    return render(request, "requests/_password.html", {"password": password, "grant": grant})
