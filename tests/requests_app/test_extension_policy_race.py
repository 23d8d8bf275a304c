"""An extension racing a site admin's save of a lower ``deny_over_duration``, each on its own
PostgreSQL connection, as two processes would.

The save shortens the account's active requests to the new limit (``lifecycle.policy._shorten``,
on the request's row locked). An extension that asked the policy before that save committed must
not then apply on top of the shortened request: the outcome must be as if the two had run one
after the other, either the extension refused by the new limit, or the extension first and then
cut back to the limit. The race helpers are ``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import ApprovalPolicy
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.services.lifecycle import extend
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.conftest import World

LIMIT = timedelta(hours=2)


def _active_for_four_hours(world: World) -> AccessRequest:
    access_request = services.access_request_create(
        requester=world.requester,
        account=world.prod,
        instances=[world.web],
        reason="deploy",
        duration=timedelta(hours=4),
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=4)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    access_request.refresh_from_db()
    return access_request


def _limit_saved(world: World) -> None:
    """The admin's save of the account's policy: at most 2 hours (the request is cut to it)."""
    with transaction.atomic():
        ApprovalPolicy.objects.create(account=world.prod, deny_over_duration=LIMIT)


def _extending(access_request: AccessRequest, world: World) -> Side:
    return Side(
        lambda: services.access_request_extend(
            access_request=access_request, actor=world.requester, by=timedelta(hours=1)
        )
    )


def test_an_extension_asked_before_a_lower_limit_was_saved_is_refused_by_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = _active_for_four_hours(world)
    # The extension has asked the policy (none yet: 5 hours would do) and not yet written anything.
    hold = Hold(extend.access_request_extend_check, after=True)
    monkeypatch.setattr(extend, "access_request_extend_check", hold)
    extending = _extending(access_request, world)
    extending.start()
    hold.wait(extending)

    _limit_saved(world)  # committed meanwhile: the request is cut to 2 hours
    assert AccessRequest.objects.get(pk=access_request.pk).total_duration == LIMIT
    hold.release.set()

    extending.join(30)
    assert not extending.is_alive()
    # Asked again of the request as it is now (2 hours, and a limit of 2): refused, nothing changed.
    assert isinstance(extending.error, RequestRuleError), repr(extending.error)
    assert "this request has 2 h, so it can no longer be extended" in str(extending.error), str(extending.error)
    access_request.refresh_from_db()
    assert access_request.total_duration == LIMIT
    assert access_request.expires_at == access_request.activated_at + LIMIT
    assert not LogbookEntry.objects.filter(action="request.extended").exists()
    assert LogbookEntry.objects.filter(action="request.extend_denied", request_id=access_request.pk).count() == 1
    decided = LogbookEntry.objects.get(action="approval_policy.decided", request_id=access_request.pk)
    assert decided.detail["total_minutes"] == 3 * 60  # weighed against the 2 hours it has now, not 4
    assert LogbookEntry.objects.filter(action="request.shortened", request_id=access_request.pk).count() == 1
    assert logbook_verify().intact


def test_an_extension_holding_the_request_is_cut_back_by_the_lower_limit_saved_after_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = _active_for_four_hours(world)
    # The extension has written its UPDATE (the request's row locked), not yet its Logbook entry.
    hold = Hold(extend.logbook_append)
    monkeypatch.setattr(extend, "logbook_append", hold)
    extending = _extending(access_request, world)
    extending.start()
    hold.wait(extending)

    saving = Side(lambda: _limit_saved(world))
    saving.start()
    wait_for_a_lock_waiter()  # the save's shortening waits for the extension's row lock
    hold.release.set()

    extending.finish()
    saving.finish()
    # Extended to 5 hours first, then cut to the limit that was saved after it.
    access_request.refresh_from_db()
    assert access_request.total_duration == LIMIT
    assert access_request.expires_at == access_request.activated_at + LIMIT
    extended = LogbookEntry.objects.get(action="request.extended", request_id=access_request.pk)
    shortened = LogbookEntry.objects.get(action="request.shortened", request_id=access_request.pk)
    assert extended.pk < shortened.pk
    assert shortened.detail["total_minutes_before"] == 5 * 60
    assert logbook_verify().intact
