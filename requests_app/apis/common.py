"""Helpers the endpoints share: who is asking, scoped lookups, and the request as the person sees it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import permissions
from accounts.authentication import cli_token_used
from accounts.models import AwsAccount, User
from core.dispatch import DispatchWatch
from core.errors import RequestRuleError
from requests_app import selectors, services
from requests_app.models import AccessRequest, Grant, Instance
from requests_app.serializers import AccessRequestOutput

# Keeps timedelta(minutes=...) far from overflow; the real limits are the services' to say.
MINUTES_SANITY_LIMIT = 10_000_000


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


def _renamed(error: RequestRuleError, names: dict[str, str]) -> RequestRuleError:
    """The same error with the services' field names replaced by this API's input names."""
    return RequestRuleError(
        {names.get(field, field): messages for field, messages in error.errors.items()}, code=error.code
    )


def _with_actions(
    access_requests: Sequence[AccessRequest], *, request: Request, approves: bool | None = None
) -> Sequence[AccessRequest]:
    """Set ``actions`` (the names of what the person may do now, with what they signed in with) on each
    request, from the one selector.

    ``approves`` True: the person approves on every request's account (the approval queue)."""
    actions = selectors.access_request_actions_for_list(
        access_requests=access_requests, user=_person(request), approves=approves, own_only=cli_token_used(request)
    )
    for access_request in access_requests:
        access_request.actions = actions[access_request.pk].available  # type: ignore[attr-defined]
    return access_requests


QUEUED_NOTE = (
    "The workers could not be reached: the change is saved and its work is queued; "
    "it starts on its own once they are back."
)


def _request_response(
    request: Request, pk: int, *, code: int = status.HTTP_200_OK, watch: DispatchWatch | None = None
) -> Response:
    """The request as the person now sees it (loaded again: a transition changes grants too).

    With ``watch`` holding sends the broker did not take, the answer carries ``queued`` (a note)."""
    access_request, actions = selectors.access_request_get_with_actions(
        user=_person(request), pk=pk, own_only=cli_token_used(request)
    )
    access_request.actions = actions.available  # type: ignore[attr-defined]
    data = AccessRequestOutput(access_request).data
    if watch is not None and watch.deferred:
        data["queued"] = QUEUED_NOTE
    return Response(data, status=code)


def _with_problems(instances: Iterable[Instance]) -> list[Instance]:
    rows = list(instances)
    for instance in rows:
        instance.problem = services.instance_problem(instance)  # type: ignore[attr-defined]
        instance.available = instance.problem is None  # type: ignore[attr-defined]
    return rows


def _grant(request: Request, pk: int, instance_id: str) -> Grant:
    return selectors.grant_get_by_instance(user=_person(request), request_pk=pk, instance_id=instance_id)
