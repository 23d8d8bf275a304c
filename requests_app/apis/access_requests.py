"""Access requests: list, ask, read, and the transitions (approve, reject, cancel, extend, complete).

Views parse input, find the request through a selector scoped to the person (so another
person's request is a 404), call one service and render the result with what the person may
do next. The rules live in ``requests_app.rules``; a broken one arrives as ``RequestRuleError``
and the exception handler turns it into 400 (invalid), 403 (forbidden) or 409 (conflict).
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import permissions
from accounts.authentication import SessionOnly, cli_token_used
from accounts.models import AwsAccount, account_id_validator
from core.api import BoundedListField, choice_refusal, error_responses
from core.dispatch import dispatch_watch
from core.errors import RequestRuleError
from requests_app import rules, selectors, services
from requests_app.apis.common import MINUTES_SANITY_LIMIT, _person, _renamed, _request_response, _with_actions
from requests_app.apis.pagination import NewestFirstPagination, OldestFirstPagination
from requests_app.models import DECISION_NOTE_MAX, AccessRequest, RequestStatus
from requests_app.serializers import AccessRequestOutput


class AccessRequestListCreateApi(GenericAPIView):
    pagination_class = NewestFirstPagination
    serializer_class = AccessRequestOutput

    class RequestFilter(serializers.Serializer):
        scope = serializers.ChoiceField(
            choices=[("mine", "Your own requests"), ("all", "Every request you can see")],
            default="mine",
            error_messages={"invalid_choice": choice_refusal(["mine", "all"])},
        )
        status = serializers.ChoiceField(
            choices=RequestStatus.choices,
            required=False,
            allow_blank=True,
            error_messages={"invalid_choice": choice_refusal(RequestStatus.values)},
        )

    class RequestCreateInput(serializers.Serializer):
        # The model's rule in its fixed words: a value that is no account id is never repeated back.
        account = serializers.CharField(validators=[account_id_validator], help_text="12-digit AWS account id")
        instances = BoundedListField(
            child=serializers.CharField(max_length=32),
            allow_empty=True,
            max_length=rules.INSTANCES_MAX,
            help_text=f"EC2 instance ids, at most {rules.INSTANCES_MAX}",
            error_messages={"max_length": f"Choose at most {rules.INSTANCES_MAX} instances for one request."},
        )
        reason = serializers.CharField(allow_blank=True, trim_whitespace=True)
        ticket = serializers.CharField(allow_blank=True, required=False, default="")
        duration_minutes = serializers.IntegerField(
            default=60,
            min_value=0,
            max_value=MINUTES_SANITY_LIMIT,
            # The service's words for any duration outside 15 minutes to 12 hours, these too.
            error_messages={"min_value": rules.DURATION_RANGE_MESSAGE, "max_value": rules.DURATION_RANGE_MESSAGE},
        )
        admin_rights = serializers.BooleanField(
            default=False,
            help_text="Linux: sudo; Windows: local Administrators, or the domain's admin group on a domain "
            "controller. Without it a Windows user is in Remote Desktop Users only.",
        )

    @extend_schema(
        summary="Your requests, or every request you can see",
        parameters=[RequestFilter],
        responses={200: AccessRequestOutput(many=True), **error_responses(400)},
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
        return self.get_paginated_response(AccessRequestOutput(_with_actions(page, request=request), many=True).data)

    @extend_schema(
        summary="Ask for access to instances of one account",
        request=RequestCreateInput,
        responses={201: AccessRequestOutput, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        payload = self.RequestCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        account = permissions.visible_accounts(_person(request)).filter(account_id=data["account"]).first()
        if account is None:
            raise RequestRuleError({"account": [f"You have no account {data['account']}."]})
        instance_ids = list(dict.fromkeys(data["instances"]))
        found = selectors.instances_by_id(account=account, instance_ids=instance_ids)
        # Only someone who may ask hears which ids the account lacks (the inventory is theirs to
        # see); anyone else meets the service's refusal, on record with the instances it did find.
        unknown = [instance_id for instance_id in instance_ids if instance_id not in found]
        if unknown and permissions.request_role_refusal(_person(request), account) is None:
            raise RequestRuleError({"instances": [_not_instances_of(account, unknown)]})
        try:
            with dispatch_watch() as watch:
                access_request = services.access_request_create(
                    requester=_person(request),
                    account=account,
                    instances=[found[instance_id] for instance_id in instance_ids if instance_id in found],
                    reason=data["reason"],
                    ticket=data["ticket"],
                    duration=timedelta(minutes=data["duration_minutes"]),
                    admin_rights=data["admin_rights"],
                )
        except RequestRuleError as error:
            raise _renamed(error, {"duration": "duration_minutes"}) from error
        return _request_response(request, access_request.pk, code=status.HTTP_201_CREATED, watch=watch)


UNKNOWN_NAMED = 10


def _not_instances_of(account: AwsAccount, unknown: list[str]) -> str:
    """The ids the account lacks, the first ``UNKNOWN_NAMED`` by name: the answer stays short."""
    named = ", ".join(unknown[:UNKNOWN_NAMED])
    more = f" and {len(unknown) - UNKNOWN_NAMED} more" if len(unknown) > UNKNOWN_NAMED else ""
    return f"Not instances of {account.name} ({account.account_id}): {named}{more}."


class AccessRequestDetailApi(APIView):
    @extend_schema(
        summary="One request, its grants and what you may do to it",
        responses={200: AccessRequestOutput, **error_responses(404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        return _request_response(request, pk)


class DecisionInput(serializers.Serializer):
    # Kept whole on the request and in the Logbook: a longer note is refused, never cut.
    note = serializers.CharField(
        allow_blank=True,
        required=False,
        default="",
        max_length=DECISION_NOTE_MAX,
        help_text=f"For the requester and the Logbook: optional, at most {DECISION_NOTE_MAX} characters.",
        error_messages={"max_length": f"Keep the note to at most {DECISION_NOTE_MAX} characters."},
    )


REJECT_REASON_REQUIRED = (
    f"Give the requester a reason for the rejection in `note` (at most {DECISION_NOTE_MAX} characters): "
    "they read it on their request, and the Logbook keeps it."
)


class RejectInput(serializers.Serializer):
    note = serializers.CharField(
        allow_blank=True,
        required=False,
        default="",
        max_length=DECISION_NOTE_MAX,
        help_text=f"Why, for the requester and the Logbook: required, at most {DECISION_NOTE_MAX} characters.",
        error_messages={"max_length": f"Keep the reason to at most {DECISION_NOTE_MAX} characters."},
    )


# Approve and reject take the same input and give the same answer; only the service differs, and
# a rejection must say why. (A comment, not a docstring: drf-spectacular would publish a docstring
# as both operations' description.)
class _DecisionApi(APIView):
    # Decisions on other people's access are made signed in with a browser, never with a CLI token.
    permission_classes = [IsAuthenticated, SessionOnly]
    decide: staticmethod
    input_class: type[serializers.Serializer] = DecisionInput
    requires_note = False

    def post(self, request: Request, pk: int) -> Response:
        payload = self.input_class(data=request.data)
        payload.is_valid(raise_exception=True)
        person = _person(request)
        access_request = selectors.access_request_get(user=person, pk=pk)
        note = payload.validated_data["note"]
        # As on the web page: only someone who may decide is sent back for a reason; anyone
        # else meets the service's refusal (and its Logbook entry) as before.
        if (
            self.requires_note
            and not note.strip()
            and selectors.access_request_actions(access_request=access_request, user=person).reject
        ):
            raise ValidationError({"note": [REJECT_REASON_REQUIRED]})
        with dispatch_watch() as watch:
            self.decide(access_request=access_request, approver=person, note=note)
        return _request_response(request, pk, watch=watch)


@extend_schema_view(
    post=extend_schema(
        summary="Approve a pending request",
        request=DecisionInput,
        responses={200: AccessRequestOutput, **error_responses(400, 403, 404, 409)},
    )
)
class AccessRequestApproveApi(_DecisionApi):
    decide = staticmethod(services.access_request_approve)


@extend_schema_view(
    post=extend_schema(
        summary="Reject a pending request, saying why",
        request=RejectInput,
        responses={200: AccessRequestOutput, **error_responses(400, 403, 404, 409)},
    )
)
class AccessRequestRejectApi(_DecisionApi):
    decide = staticmethod(services.access_request_reject)
    input_class = RejectInput
    requires_note = True


# Cancelling and completing with a CLI token: the person's own request only (``own_only``); with a
# browser sign-in, whatever the person may end (an approver's, a site admin's). The token is for one's
# own access; ending someone else's takes the browser's sign-in and second factor, as deciding does.
class AccessRequestCancelApi(APIView):
    def only_takes_access_away(self, request: Request) -> bool:
        """Never held back by the limit on changes when this person may cancel it (accounts.api_limits)."""
        return selectors.access_request_may_end(
            user=_person(request), pk=self.kwargs.get("pk"), action="cancel", own_only=cli_token_used(request)
        )

    @extend_schema(
        summary="Withdraw your request before provisioning starts",
        request=None,
        responses={200: AccessRequestOutput, **error_responses(403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        access_request = selectors.access_request_get(user=_person(request), pk=pk)
        with dispatch_watch() as watch:
            services.access_request_cancel(
                access_request=access_request, actor=_person(request), own_only=cli_token_used(request)
            )
        return _request_response(request, pk, watch=watch)


class AccessRequestCompleteApi(APIView):
    def only_takes_access_away(self, request: Request) -> bool:
        """Never held back by the limit on changes when this person may complete it (accounts.api_limits)."""
        return selectors.access_request_may_end(
            user=_person(request), pk=self.kwargs.get("pk"), action="complete", own_only=cli_token_used(request)
        )

    @extend_schema(
        summary="End access now and remove the short-lived users",
        request=None,
        responses={200: AccessRequestOutput, **error_responses(403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        access_request = selectors.access_request_get(user=_person(request), pk=pk)
        with dispatch_watch() as watch:
            services.access_request_complete(
                access_request=access_request, actor=_person(request), own_only=cli_token_used(request)
            )
        return _request_response(request, pk, watch=watch)


class AccessRequestExtendApi(APIView):
    class ExtendInput(serializers.Serializer):
        minutes = serializers.IntegerField(
            min_value=0, max_value=MINUTES_SANITY_LIMIT, error_messages={"min_value": rules.EXTEND_AT_LEAST_MESSAGE}
        )

    @extend_schema(
        summary="Extend active access (12 hours at most in total)",
        request=ExtendInput,
        responses={200: AccessRequestOutput, **error_responses(400, 403, 404, 409)},
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
        # Every row is on an account this person approves for (the queue's own filter).
        return self.get_paginated_response(
            AccessRequestOutput(_with_actions(page, request=request, approves=True), many=True).data
        )
