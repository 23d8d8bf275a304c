"""The REST API for accounts, instances, access requests and approvals.

Views parse input, find the object through a selector scoped to the person (so another
person's object is a 404), call one service and render the result. The rules live in the
services; a broken rule arrives here as ``RequestRuleError`` and ``exception_handler`` turns
it into 400 (invalid), 403 (forbidden) or 409 (conflict).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from accounts import permissions
from accounts.authentication import BearerTokenAuthentication
from accounts.models import AwsAccount, Membership, User
from requests_app import selectors, services
from requests_app.errors import RequestRuleError
from requests_app.models import (
    LIVE_REQUEST_STATUSES,
    AccessRequest,
    Grant,
    GrantStatus,
    Instance,
    RequestStatus,
)
from requests_app.serializers import (
    AccessRequestOutput,
    AccountOutput,
    InstanceOutput,
    SyncOutput,
)
from requests_app.usernames import grant_principal

# Keeps timedelta(minutes=...) far from overflow; the real limits are the services' to say.
MINUTES_SANITY_LIMIT = 10_000_000

STATUS_FOR_RULE_CODE = {
    "invalid": status.HTTP_400_BAD_REQUEST,
    "forbidden": status.HTTP_403_FORBIDDEN,
    "conflict": status.HTTP_409_CONFLICT,
    "unavailable": status.HTTP_502_BAD_GATEWAY,
}


# --- Errors ---------------------------------------------------------------------------


def rule_error_body(errors: dict[str, list[str]]) -> dict[str, Any]:
    """Per-field messages as DRF writes them; a message about the whole request is ``detail``."""
    if set(errors) == {"__all__"}:
        return {"detail": " ".join(errors["__all__"])}
    return {
        (api_settings.NON_FIELD_ERRORS_KEY if field == "__all__" else field): list(messages)
        for field, messages in errors.items()
    }


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestRuleError):
        # No set_rollback(): a refusal's Logbook entry must outlive the request (see lifecycle._deny).
        return Response(
            rule_error_body(exc.errors),
            status=STATUS_FOR_RULE_CODE.get(exc.code, status.HTTP_400_BAD_REQUEST),
        )
    return drf_exception_handler(exc, context)


def _renamed(error: RequestRuleError, names: dict[str, str]) -> RequestRuleError:
    """The same error with the services' field names replaced by this API's input names."""
    return RequestRuleError(
        {names.get(field, field): messages for field, messages in error.errors.items()}, code=error.code
    )


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Describes ``accounts.authentication.BearerTokenAuthentication`` in the schema."""

    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=BearerTokenAuthentication.keyword
        )


ERROR_RESPONSES = {
    400: OpenApiResponse(description='Bad input: `{"field": ["message", ...]}`.'),
    403: OpenApiResponse(description='Not allowed: `{"detail": "message"}`.'),
    404: OpenApiResponse(description="Not found, or not visible to you."),
    409: OpenApiResponse(description='The request is in a state that does not allow this: `{"detail": "message"}`.'),
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: ERROR_RESPONSES[code] for code in codes}


# --- Pagination -----------------------------------------------------------------------


class NewestFirstPagination(CursorPagination):
    ordering = ("-created_at", "-id")


class OldestFirstPagination(CursorPagination):
    # The approval queue is first come, first served.
    ordering = ("created_at", "id")


class InstancePagination(CursorPagination):
    ordering = ("name", "instance_id")
    page_size = 100


# --- Helpers --------------------------------------------------------------------------


def _person(request: Request) -> User:
    """The signed-in person; ``IsAuthenticated`` has already turned anyone else away."""
    if not isinstance(request.user, User):
        raise NotAuthenticated()
    return request.user


def _visible_account(user: User, account_id: str) -> AwsAccount:
    account = permissions.visible_accounts(user).filter(account_id=account_id).first()
    if account is None:
        raise Http404("No such account.")
    return account


def _request_actions(access_request: AccessRequest, *, user: User, approves: bool) -> list[str]:
    """Which transitions the person may ask for now, mirroring the checks of the lifecycle services.

    Computed from loaded data only (grants are prefetched), so a list costs no extra query per row.
    """
    current = access_request.status
    actions: list[str] = []
    if current == RequestStatus.PENDING and permissions.can_decide(user, access_request, approves=approves):
        actions += ["approve", "reject"]
    if permissions.can_cancel(user, access_request):
        untouched = all(grant.status == GrantStatus.PENDING for grant in access_request.grants.all())
        if current == RequestStatus.PENDING or (current == RequestStatus.APPROVED and untouched):
            actions.append("cancel")
    if (
        permissions.can_extend(user, access_request)
        and current == RequestStatus.ACTIVE
        and access_request.expires_at is not None
        and access_request.expires_at > timezone.now()
        and access_request.total_duration + services.MIN_DURATION <= services.MAX_TOTAL_DURATION
    ):
        actions.append("extend")
    if current in LIVE_REQUEST_STATUSES and permissions.can_complete(user, access_request, approves=approves):
        actions.append("complete")
    return actions


def _with_actions(access_requests: Sequence[AccessRequest], *, user: User) -> Sequence[AccessRequest]:
    """Set ``actions`` on each request, asking which of their accounts the person approves in one query."""
    account_pks = {access_request.account_id for access_request in access_requests}
    approvable = (
        set(permissions.approvable_accounts(user).filter(pk__in=account_pks).values_list("pk", flat=True))
        if account_pks
        else set()
    )
    for access_request in access_requests:
        access_request.actions = _request_actions(  # type: ignore[attr-defined]
            access_request, user=user, approves=access_request.account_id in approvable
        )
    return access_requests


def _request_response(request: Request, pk: int, *, code: int = status.HTTP_200_OK) -> Response:
    """The request as the person now sees it (loaded again: a transition changes grants too)."""
    access_request = selectors.access_request_get(user=_person(request), pk=pk)
    _with_actions([access_request], user=_person(request))
    return Response(AccessRequestOutput(access_request).data, status=code)


def _with_problems(instances: Iterable[Instance]) -> list[Instance]:
    rows = list(instances)
    for instance in rows:
        instance.problem = services.instance_problem(instance)  # type: ignore[attr-defined]
        instance.available = instance.problem is None  # type: ignore[attr-defined]
    return rows


# --- Accounts and instances -----------------------------------------------------------


class AccountListApi(GenericAPIView):
    pagination_class = None
    serializer_class = AccountOutput

    @extend_schema(summary="Accounts you can see, with your role on each", responses=AccountOutput(many=True))
    def get(self, request: Request) -> Response:
        user = _person(request)
        own_membership = Membership.objects.filter(user=user, account=OuterRef("pk"))
        accounts = list(
            permissions.visible_accounts(user)
            .annotate(my_role=Subquery(own_membership.values("role")[:1]))
            .order_by("name", "account_id")
        )
        approvable = set(permissions.approvable_accounts(user).values_list("pk", flat=True))
        rows = []
        for account in accounts:
            role = Membership.Role(account.my_role or Membership.Role.NONE)
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
            OpenApiParameter(
                "account_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="12-digit AWS account id"
            ),
            OpenApiParameter("search", OpenApiTypes.STR, description="Part of a name, instance id or private IP"),
        ],
        responses={200: InstanceOutput(many=True), **_errors(403, 404)},
    )
    def get(self, request: Request, account_id: str) -> Response:
        account = _visible_account(_person(request), account_id)
        role = Membership.Role(permissions.role_on(_person(request), account))
        if role != Membership.Role.ADMIN:
            held = "no role" if role == Membership.Role.NONE else f"the {role.label} role"
            raise PermissionDenied(
                f"You have {held} on {account.name} ({account.account_id}); only Admin may request access."
            )
        query = self.InstanceFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        instances = selectors.requestable_instances(
            user=_person(request), account=account, search=query.validated_data["search"]
        )
        page = self.paginate_queryset(instances)
        return self.get_paginated_response(InstanceOutput(_with_problems(page or []), many=True).data)


class InventorySyncApi(APIView):
    @extend_schema(
        summary="Refresh an account's inventory from EC2 and Systems Manager now",
        parameters=[
            OpenApiParameter(
                "account_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="12-digit AWS account id"
            ),
        ],
        request=None,
        responses={200: SyncOutput, **_errors(403, 404)},
    )
    def post(self, request: Request, account_id: str) -> Response:
        account = _visible_account(_person(request), account_id)
        if not permissions.can_approve_on(_person(request), account):
            raise PermissionDenied(f"Only approvers of {account.name} ({account.account_id}) can sync its inventory.")
        result = services.inventory_sync(account=account, actor=_person(request))
        return Response(SyncOutput(result).data)


# --- Access requests ------------------------------------------------------------------


class AccessRequestListCreateApi(GenericAPIView):
    pagination_class = NewestFirstPagination
    serializer_class = AccessRequestOutput

    class RequestFilter(serializers.Serializer):
        scope = serializers.ChoiceField(
            choices=[("mine", "Your own requests"), ("all", "Every request you can see")],
            default="mine",
        )
        status = serializers.ChoiceField(choices=RequestStatus.choices, required=False, allow_blank=True)

    class RequestCreateInput(serializers.Serializer):
        account = serializers.CharField(help_text="12-digit AWS account id")
        instances = serializers.ListField(
            child=serializers.CharField(max_length=32), allow_empty=True, help_text="EC2 instance ids"
        )
        reason = serializers.CharField(allow_blank=True, trim_whitespace=True)
        ticket = serializers.CharField(allow_blank=True, required=False, default="")
        duration_minutes = serializers.IntegerField(default=60, min_value=0, max_value=MINUTES_SANITY_LIMIT)
        admin_rights = serializers.BooleanField(
            default=False,
            help_text="Linux: sudo; Windows: local Administrators, or the domain's admin group on a domain "
            "controller. Without it a Windows user is in Remote Desktop Users only.",
        )

    @extend_schema(
        summary="Your requests, or every request you can see",
        parameters=[RequestFilter],
        responses={200: AccessRequestOutput(many=True), **_errors(400)},
    )
    def get(self, request: Request) -> Response:
        filters = self.RequestFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.access_request_list(
            user=_person(request),
            status=filters.validated_data.get("status") or None,
            mine_only=filters.validated_data["scope"] == "mine",
        )
        page = self.paginate_queryset(queryset) or []
        return self.get_paginated_response(
            AccessRequestOutput(_with_actions(page, user=_person(request)), many=True).data
        )

    @extend_schema(
        summary="Ask for access to instances of one account",
        request=RequestCreateInput,
        responses={201: AccessRequestOutput, **_errors(400)},
    )
    def post(self, request: Request) -> Response:
        payload = self.RequestCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        account = permissions.visible_accounts(_person(request)).filter(account_id=data["account"]).first()
        if account is None:
            raise RequestRuleError({"account": [f"You have no account {data['account']}."]})
        instance_ids = list(dict.fromkeys(data["instances"]))
        found = {
            instance.instance_id: instance
            for instance in Instance.objects.filter(account=account, instance_id__in=instance_ids)
        }
        unknown = [instance_id for instance_id in instance_ids if instance_id not in found]
        if unknown:
            raise RequestRuleError(
                {"instances": [f"Not instances of {account.name} ({account.account_id}): {', '.join(unknown)}."]}
            )
        try:
            access_request = services.access_request_create(
                requester=_person(request),
                account=account,
                instances=[found[instance_id] for instance_id in instance_ids],
                reason=data["reason"],
                ticket=data["ticket"],
                duration=timedelta(minutes=data["duration_minutes"]),
                admin_rights=data["admin_rights"],
            )
        except RequestRuleError as error:
            raise _renamed(error, {"duration": "duration_minutes"}) from error
        return _request_response(request, access_request.pk, code=status.HTTP_201_CREATED)


class AccessRequestDetailApi(APIView):
    @extend_schema(
        summary="One request, its grants and what you may do to it",
        responses={200: AccessRequestOutput, **_errors(404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        return _request_response(request, pk)


class DecisionInput(serializers.Serializer):
    note = serializers.CharField(allow_blank=True, required=False, default="")


class AccessRequestApproveApi(APIView):
    @extend_schema(
        summary="Approve a pending request",
        request=DecisionInput,
        responses={200: AccessRequestOutput, **_errors(400, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        payload = DecisionInput(data=request.data)
        payload.is_valid(raise_exception=True)
        access_request = selectors.access_request_get(user=_person(request), pk=pk)
        services.access_request_approve(
            access_request=access_request, approver=_person(request), note=payload.validated_data["note"]
        )
        return _request_response(request, pk)


class AccessRequestRejectApi(APIView):
    @extend_schema(
        summary="Reject a pending request",
        request=DecisionInput,
        responses={200: AccessRequestOutput, **_errors(400, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        payload = DecisionInput(data=request.data)
        payload.is_valid(raise_exception=True)
        access_request = selectors.access_request_get(user=_person(request), pk=pk)
        services.access_request_reject(
            access_request=access_request, approver=_person(request), note=payload.validated_data["note"]
        )
        return _request_response(request, pk)


class AccessRequestCancelApi(APIView):
    @extend_schema(
        summary="Withdraw your request before provisioning starts",
        request=None,
        responses={200: AccessRequestOutput, **_errors(403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        access_request = selectors.access_request_get(user=_person(request), pk=pk)
        services.access_request_cancel(access_request=access_request, actor=_person(request))
        return _request_response(request, pk)


class AccessRequestCompleteApi(APIView):
    @extend_schema(
        summary="End access now and remove the short-lived users",
        request=None,
        responses={200: AccessRequestOutput, **_errors(403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        access_request = selectors.access_request_get(user=_person(request), pk=pk)
        services.access_request_complete(access_request=access_request, actor=_person(request))
        return _request_response(request, pk)


class AccessRequestExtendApi(APIView):
    class ExtendInput(serializers.Serializer):
        minutes = serializers.IntegerField(min_value=0, max_value=MINUTES_SANITY_LIMIT)

    @extend_schema(
        summary="Extend active access (12 hours at most in total)",
        request=ExtendInput,
        responses={200: AccessRequestOutput, **_errors(400, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        payload = self.ExtendInput(data=request.data)
        payload.is_valid(raise_exception=True)
        access_request = selectors.access_request_get(user=_person(request), pk=pk)
        try:
            services.access_request_extend(
                access_request=access_request,
                actor=_person(request),
                by=timedelta(minutes=payload.validated_data["minutes"]),
            )
        except RequestRuleError as error:
            raise _renamed(error, {"by": "minutes"}) from error
        return _request_response(request, pk)


class ApprovalQueueApi(GenericAPIView):
    pagination_class = OldestFirstPagination
    serializer_class = AccessRequestOutput

    @extend_schema(summary="Pending requests you may decide, oldest first", responses=AccessRequestOutput(many=True))
    def get(self, request: Request) -> Response:
        queryset: QuerySet[AccessRequest] = selectors.approval_queue(user=_person(request))
        page = self.paginate_queryset(queryset) or []
        return self.get_paginated_response(
            AccessRequestOutput(_with_actions(page, user=_person(request)), many=True).data
        )


def _grant(request: Request, pk: int, instance_id: str) -> Grant:
    access_request = selectors.access_request_get(user=_person(request), pk=pk)
    return get_object_or_404(
        Grant.objects.select_related("instance", "request__account"),
        request=access_request,
        instance__instance_id=instance_id,
    )


class CertificateInput(serializers.Serializer):
    public_key = serializers.CharField(max_length=16384, help_text="Your OpenSSH public key line (Ed25519 or RSA).")


class CertificateOutput(serializers.Serializer):
    username = serializers.CharField(help_text="The short-lived user to log in as.")
    principal = serializers.CharField(help_text="The certificates' one principal: this grant's, valid nowhere else.")
    certificates = serializers.ListField(child=serializers.CharField(), help_text="Try them in this order.")
    valid_before = serializers.DateTimeField()


class GrantCertificateApi(APIView):
    @extend_schema(
        summary="Sign your public key for one instance of an active request",
        request=CertificateInput,
        responses={200: CertificateOutput, **_errors(400, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int, instance_id: str) -> Response:
        payload = CertificateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        grant = _grant(request, pk, instance_id)
        certificates = services.grant_issue_certificate(
            grant=grant, user=_person(request), public_key=payload.validated_data["public_key"]
        )
        return Response(
            {
                "username": grant.username,
                "principal": grant_principal(grant.uid),
                "certificates": certificates,
                "valid_before": grant.request.expires_at,
            }
        )


class PasswordOutput(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField()


class GrantPasswordApi(APIView):
    @extend_schema(
        summary="The Windows password of one instance of an active request (each read is logged)",
        request=None,
        responses={200: PasswordOutput, **_errors(400, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int, instance_id: str) -> Response:
        grant = _grant(request, pk, instance_id)
        password = services.grant_reveal_password(grant=grant, user=_person(request))
        return Response({"username": grant.username, "password": password})
