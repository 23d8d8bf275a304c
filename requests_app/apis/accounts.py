"""Accounts the person can see, the instances they may request, and an inventory refresh."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import permissions
from accounts.authentication import SessionOnly
from accounts.models import Membership
from accounts.selectors import account_list_with_role, approvable_account_pks
from core.api import error_responses
from requests_app import selectors, services
from requests_app.apis.common import _person, _visible_account, _with_problems
from requests_app.apis.pagination import InstancePagination
from requests_app.serializers import AccountOutput, InstanceOutput, SyncOutput

ACCOUNT_ID_PARAMETER = OpenApiParameter(
    "account_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="12-digit AWS account id"
)


class AccountListApi(GenericAPIView):
    pagination_class = None
    serializer_class = AccountOutput

    @extend_schema(summary="Accounts you can see, with your role on each", responses=AccountOutput(many=True))
    def get(self, request: Request) -> Response:
        user = _person(request)
        approvable = approvable_account_pks(user=user)
        rows = []
        for account in account_list_with_role(user=user):
            role = Membership.Role(account.my_role or Membership.Role.NONE)  # type: ignore[attr-defined]
            rows.append(
                {
                    "account_id": account.account_id,
                    "name": account.name,
                    "regions": account.regions,
                    "role": role.value,
                    "role_label": role.label,
                    "can_request": role == Membership.Role.ADMIN,
                    "can_approve": account.pk in approvable,
                    "inventory_synced_at": account.inventory_synced_at,
                    "forward_ports": list(account.forward_ports),
                    "forward_destination_list": list(account.forward_destination_list),
                    "cli_sessions": account.cli_sessions,
                }
            )
        return Response(AccountOutput(rows, many=True).data)


class InstanceListApi(GenericAPIView):
    pagination_class = InstancePagination
    serializer_class = InstanceOutput

    class InstanceFilter(serializers.Serializer):
        search = serializers.CharField(allow_blank=True, max_length=100, default="")

    @extend_schema(
        summary="Instances you may request on an account",
        parameters=[
            ACCOUNT_ID_PARAMETER,
            OpenApiParameter(
                "search",
                OpenApiTypes.STR,
                description="Part of a name, instance id or private IP (of any of its network interfaces)",
            ),
        ],
        responses={200: InstanceOutput(many=True), **error_responses(403, 404)},
    )
    def get(self, request: Request, account_id: str) -> Response:
        account = _visible_account(_person(request), account_id)
        refusal = permissions.request_role_refusal(_person(request), account)
        if refusal:
            raise PermissionDenied(refusal)
        query = self.InstanceFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        instances = selectors.requestable_instances(
            user=_person(request), account=account, search=query.validated_data["search"]
        )
        page = self.paginate_queryset(instances)
        return self.get_paginated_response(InstanceOutput(_with_problems(page or []), many=True).data)


class InventorySyncTooSoon(APIException):
    """429 with Retry-After (DRF's handler sets it from ``wait``): a sync runs, or one ended just now."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "throttled"

    def __init__(self, refused: services.InventorySyncTooSoon) -> None:
        super().__init__(detail=refused.message)
        self.wait = refused.retry_after


class InventorySyncApi(APIView):
    # An approver's browser sign-in, never a CLI token (the CLI does not sync).
    permission_classes = [IsAuthenticated, SessionOnly]

    @extend_schema(
        summary="Refresh an account's inventory from EC2 and Systems Manager now",
        description="One sync at a time per account, and the next only once "
        "PASSPORT_INVENTORY_SYNC_COOLDOWN_SECONDS (60 by default) have passed since the last one ended; "
        "sooner is answered 429 with Retry-After. Refused to a CLI token: sign in with a browser.",
        parameters=[ACCOUNT_ID_PARAMETER],
        request=None,
        responses={200: SyncOutput, **error_responses(403, 404, 429)},
    )
    def post(self, request: Request, account_id: str) -> Response:
        account = _visible_account(_person(request), account_id)
        if not permissions.can_approve_on(_person(request), account):
            raise PermissionDenied(f"Only approvers of {account.name} ({account.account_id}) can sync its inventory.")
        try:
            result = services.inventory_sync_by_person(account=account, actor=_person(request))
        except services.InventorySyncTooSoon as refused:
            raise InventorySyncTooSoon(refused) from None
        return Response(SyncOutput(result).data)
