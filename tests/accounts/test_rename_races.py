"""A site admin renaming a person racing a transaction that writes a row referring to that person and
appends to the Logbook, each on its own PostgreSQL connection, as two processes would.

The username is a unique column: an UPDATE that changes it locks the row FOR UPDATE, which a
reference check's FOR KEY SHARE waits for. (An account's id, the other such column, no longer
changes once saved: ``test_account_identity``.) Django's foreign keys are deferred in
PostgreSQL, so that check ran at commit, the Logbook's head held by then, while the admin's
transaction, holding the row, waited for the head to append its own entries: a deadlock,
PostgreSQL aborting one of them. An append now runs the checks due before it takes the head. (The
Logbook's own entries name their actor without a constraint: an append alone never met this.) The
lock order is written down in ``requests_app.services.lifecycle``; the race helpers are
``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client

from accounts.models import AwsAccount, Membership, User
from audit import services as audit_services
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.audit.admin_forms import add_inline_row, form_data, superuser_client
from tests.audit.test_admin_trail_accounts import ACCOUNTS
from tests.conftest import World
from tests.factories import make_user

# A reason with what a hostile page could send: markup, quotes (a bidi mark is refused, so not that).
REASON = "deploy <script>alert('x')</script> \"quoted\" -- ; DROP TABLE"
NEW_NAME = "alice.o-neil+ops@example"  # Django's username validator refuses markup and quotes


def _admin_renames(person: User) -> Callable[[], int]:
    """The site admin's post of ``person``'s admin page with a new username."""
    client, _root = superuser_client()
    url = f"/admin/accounts/user/{person.pk}/change/"
    data = form_data(client, url, username=NEW_NAME)
    return lambda: client.post(url, data).status_code


def _her_request(world: World, account: AwsAccount) -> Callable[[], Any]:
    instance = world.web if account == world.prod else world.stage_web
    return lambda: (
        services.access_request_create(
            requester=world.requester, account=account, instances=[instance], reason=REASON
        ).pk
    )


def _admin_adds_her(world: World) -> Callable[[], Any]:
    """Another site admin's post of staging's page adding her as an observer (she is an Admin of prod)."""
    client = Client()
    client.force_login(make_user("root2", is_superuser=True, is_staff=True))
    Membership.objects.filter(user=world.requester, account=world.staging).delete()
    url = f"{ACCOUNTS}{world.staging.pk}/change/"
    data = form_data(client, url)
    add_inline_row(data, "memberships", user=str(world.requester.pk), role="observer")
    return lambda: client.post(url, data).status_code


def _race(
    monkeypatch: pytest.MonkeyPatch, *, change: Callable[[], int], model: type, other: Callable[[], Any], first: str
) -> Any:
    """Run the admin's ``change`` (of a ``model`` row) and ``other``, the one held with its locks taken
    while the second runs until it waits for a lock; returns what ``other`` returned."""
    if first == "the change":
        # Held after the admin's UPDATE (the row locked FOR UPDATE), before its Logbook entries.
        model_admin = admin.site._registry[model]
        hold = Hold(model_admin.save_model, after=True)
        monkeypatch.setattr(model_admin, "save_model", hold)
        held, second = Side(change), Side(other)
    else:
        # Held after its (first) append, the Logbook's head held, before its commit.
        hold = Hold(audit_services._append_entries, after=True)
        monkeypatch.setattr(audit_services, "_append_entries", hold)
        held, second = Side(other), Side(change)
    held.start()
    hold.wait(held)
    second.start()
    wait_for_a_lock_waiter(unless_done=second)
    hold.release.set()
    if first == "the change":
        assert held.finish() == 302
        return second.finish()
    assert second.finish() == 302
    return held.finish()


@pytest.mark.parametrize("first", ["the change", "the other"])
@pytest.mark.parametrize("what", ["her own request", "an admin adding her to an account"])
def test_renaming_a_person_does_not_deadlock_with_a_row_referring_to_them(
    world: World, monkeypatch: pytest.MonkeyPatch, what: str, first: str
) -> None:
    alice = world.requester
    other = {
        "her own request": lambda: _her_request(world, world.prod),
        "an admin adding her to an account": lambda: _admin_adds_her(world),
    }[what]()
    result = _race(monkeypatch, change=_admin_renames(alice), model=User, other=other, first=first)

    assert User.objects.get(pk=alice.pk).username == NEW_NAME
    if what == "her own request":
        assert AccessRequest.objects.get(pk=result).requester_id == alice.pk
    else:
        assert result == 302
        assert Membership.objects.get(user=alice, account=world.staging).role == "observer"
    assert LogbookEntry.objects.filter(action="admin.changed", detail__model="accounts.user").count() == 1
    assert logbook_verify().intact
