"""Reads for the access-request domain, always scoped to the person asking."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404

from accounts import permissions
from accounts.models import AwsAccount, User
from requests_app.models import AccessRequest, Grant, Instance, RequestStatus


def _with_related(queryset: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    return queryset.select_related("account", "requester", "decided_by").prefetch_related(
        Prefetch("grants", queryset=Grant.objects.select_related("instance").order_by("id"))
    )


def access_request_list(*, user: User, status: str | None = None, mine_only: bool = True) -> QuerySet[AccessRequest]:
    scope = Q(requester=user) if mine_only else permissions.access_request_visibility(user)
    queryset = AccessRequest.objects.filter(scope)
    if status:
        queryset = queryset.filter(status=status)
    return _with_related(queryset).order_by("-created_at", "-id")


def access_request_get(*, user: User, pk: int) -> AccessRequest:
    """The request if this person may see it; a 404 otherwise, never a hint that it exists."""
    queryset = _with_related(AccessRequest.objects.filter(permissions.access_request_visibility(user)))
    return get_object_or_404(queryset, pk=pk)


def approval_queue(*, user: User) -> QuerySet[AccessRequest]:
    """Pending requests this person may decide: their accounts, never their own."""
    return (
        _with_related(
            AccessRequest.objects.filter(
                status=RequestStatus.PENDING, account__in=permissions.approvable_accounts(user)
            ).exclude(requester=user)
        )
        .annotate(instance_count=Count("grants"))
        .order_by("created_at", "id")
    )


def requestable_instances(*, user: User, account: AwsAccount, search: str = "") -> QuerySet[Instance]:
    queryset = Instance.objects.filter(
        account=account, account__in=permissions.requestable_accounts(user), gone_at__isnull=True
    )
    if search:
        queryset = queryset.filter(
            Q(name__icontains=search) | Q(instance_id__icontains=search) | Q(private_ip__icontains=search)
        )
    return queryset.order_by("name", "instance_id")


def inventory_list(*, user: User) -> QuerySet[Instance]:
    return (
        Instance.objects.filter(account__in=permissions.visible_accounts(user))
        .select_related("account")
        .order_by("account__name", "name", "instance_id")
    )
