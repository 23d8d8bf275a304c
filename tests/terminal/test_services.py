"""Terminal services that other apps call."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Membership, User
from requests_app import services as request_services
from requests_app.models import AccessRequest, EndReason
from terminal import services
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db


def test_ending_a_request_tells_its_terminals_only_when_one_may_be_open(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    grant = make_active_grant(world)
    access_request = AccessRequest.objects.get(pk=grant.request_id)
    assert not services.terminals_may_be_open(request_id=access_request.pk)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    assert services.ticket_consume(token=ticket, user=world.requester, grant_id=grant.pk)
    assert services.terminals_may_be_open(request_id=access_request.pk)
    with django_capture_on_commit_callbacks() as callbacks:
        request_services.access_request_complete(access_request=access_request, actor=world.requester)
    assert len(callbacks) == 2  # the removal of the users, and the open terminals


def test_the_terminal_is_unavailable_once_the_requester_is_no_longer_admin(world: World) -> None:
    grant = make_active_grant(world)
    assert services.terminal_unavailable_reason(grant=grant, user=world.requester) is None
    Membership.objects.filter(user=world.requester, account=world.prod).update(role=Membership.Role.OBSERVER)
    assert services.terminal_unavailable_reason(grant=grant, user=world.requester) == (
        "You have the Observer role on Acme Production (111111111111) now; "
        "only an Admin of the account may have access to its instances."
    )
    Membership.objects.filter(user=world.requester, account=world.prod).delete()
    reason = services.terminal_unavailable_reason(grant=grant, user=world.requester)
    assert reason is not None and reason.startswith("You have no role on Acme Production")


def test_every_end_reason_has_its_own_words_in_the_terminal_and_the_cli() -> None:
    """A revoked request's terminal says why it closed, as a completed or expired one's does."""
    from passport_cli.access_state import _ENDED_MESSAGES

    assert set(services.END_MESSAGES) == set(EndReason)
    assert set(_ENDED_MESSAGES) == {str(reason) for reason in EndReason}
    assert "no longer an Admin" in services.END_MESSAGES[EndReason.REVOKED]


def test_a_deactivated_persons_terminal_is_no_longer_allowed_and_says_why(world: World) -> None:
    """Deactivated behind the signals (a bulk update): the re-read after a session is recorded, and
    the words a terminal closes with when its sign-in check fails, still see it."""
    grant = make_active_grant(world)
    assert services.terminal_still_allowed(grant=grant)
    assert services.terminal_signed_out_reason(user_id=world.requester.pk) == services.SIGNED_OUT_MESSAGE
    User.objects.filter(pk=world.requester.pk).update(is_active=False)
    assert not services.terminal_still_allowed(grant=grant)
    assert services.terminal_signed_out_reason(user_id=world.requester.pk) == services.DEACTIVATED_MESSAGE
