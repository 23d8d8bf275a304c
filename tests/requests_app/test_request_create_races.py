"""Two requests of one person for one Windows host, asked for at the same time (two API calls),
each on its own PostgreSQL connection, as two processes would.

A Windows user has one password, so one person has one request per Windows host. That check runs
first outside any transaction, with the IAM check (a slow call to AWS) after it; both calls would
pass it and both requests be stored, their grants sharing one local user: one's create resets the
other's password, one with administrator rights makes the other's user an Administrator, and the
first to end deletes the user the other still shows as ready. The request's transaction holds the
instances' rows and looks again: the later call is refused as it would have been a moment later.
The race helpers are ``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

import pytest

from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import TERMINAL_REQUEST_STATUSES, AccessRequest, Grant, Instance
from requests_app.services.lifecycle import create
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.conftest import World
from tests.factories import make_instance


def _asking(world: World, host: Instance, *, reason: str, admin_rights: bool = False) -> Side:
    side = Side(
        lambda: services.access_request_create(
            requester=world.requester, account=world.prod, instances=[host], reason=reason, admin_rights=admin_rights
        )
    )
    side.start()
    return side


def _refused_as_a_sequential_request_is(side: Side, world: World, host: Instance) -> None:
    side.join(30)
    assert not side.is_alive(), "still running"
    assert isinstance(side.error, RequestRuleError), repr(side.error)
    (first,) = AccessRequest.objects.filter(requester=world.requester).exclude(status__in=TERMINAL_REQUEST_STATUSES)
    assert side.error.errors["instances"] == [
        f"You already have request #{first.pk} for {host.label}; extend or complete it instead."
    ]
    assert LogbookEntry.objects.filter(action="request.create_denied").count() == 1
    assert list(Grant.objects.filter(instance=host).values_list("request_id", flat=True)) == [first.pk]


def test_a_request_stored_while_another_waits_for_its_iam_check_refuses_the_other(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = make_instance(world.prod, "win-1", platform=Instance.Platform.WINDOWS)
    hold = Hold(create.iam_check_instances)
    monkeypatch.setattr(create, "iam_check_instances", hold)
    slow = _asking(world, host, reason="patch")
    hold.wait(slow)  # its first look passed: nothing of the person's on the host yet
    monkeypatch.setattr(create, "iam_check_instances", hold.original)

    _asking(world, host, reason="other tab", admin_rights=True).finish()
    hold.release.set()

    _refused_as_a_sequential_request_is(slow, world, host)


def test_two_requests_stored_at_once_wait_for_each_other_and_the_later_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = make_instance(world.prod, "win-1", platform=Instance.Platform.WINDOWS)
    # The first held in its transaction, its request and grant written, not yet committed.
    hold = Hold(create._request_store, after=True)
    monkeypatch.setattr(create, "_request_store", hold)
    first = _asking(world, host, reason="patch")
    hold.wait(first)
    monkeypatch.setattr(create, "_request_store", hold.original)

    second = _asking(world, host, reason="other tab", admin_rights=True)
    wait_for_a_lock_waiter(unless_done=second)  # the second waits for the host's row
    assert second.is_alive(), repr(second.error)
    hold.release.set()

    first.finish()
    _refused_as_a_sequential_request_is(second, world, host)
