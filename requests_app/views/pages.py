"""The request pages: the list of one's requests, the create form and its instance picker, and a
request's page with the status fragment its poll swaps in."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.vary import vary_on_headers

from accounts import permissions
from accounts.models import AwsAccount
from accounts.page_limits import person_write_limited
from accounts.typing import AuthenticatedRequest
from core.errors import RequestRuleError
from requests_app import selectors, services
from requests_app.forms import AccessRequestForm, DecisionForm, ExtendForm, InstancePickerForm
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


# Instances the picker lists at most; past that, a search narrows them down.
PICKER_LIMIT = 100


def _picker_context(
    request: AuthenticatedRequest, account: AwsAccount | None, checked: list[str], search: str = ""
) -> dict:
    if account is None:
        return {"rows": [], "account": None}
    # One more than shown, to know whether there are more than the picker shows.
    found = list(selectors.requestable_instances(user=request.user, account=account, search=search)[: PICKER_LIMIT + 1])
    instances, more = found[:PICKER_LIMIT], len(found) > PICKER_LIMIT
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
    shown = {instance.pk for instance in instances}
    hidden = [instance for instance in selected if instance.pk not in shown]
    return {
        "rows": rows,
        "more": more,
        "limit": PICKER_LIMIT,
        "account": account,
        "search": search,
        "selected": selected,
        "hidden": hidden,
    }


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
