"""Two people's grants under one Windows name (from before names were stored), one of which never
made its user: the grant refused at create must not hold up the other person's removal, nor keep its
own person under the shared name (review s31c)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from accounts.models import User
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, OsUsername
from tests.conftest import World
from tests.factories import make_active_request
from tests.fakes.fleet import FakeFleet
from tests.requests_app.test_username_collision import KEY, _before_names_were_stored, _pair

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]


def _refused_at_create(world: World, bob: User, name: str) -> tuple[AccessRequest, Grant]:
    """Bob's request from before, under ``name`` (Alice's, her grant live on the Windows host): its
    grant is refused at create, nothing sent, and goes to removal with its failed request."""
    bobs = services.access_request_create(requester=bob, account=world.prod, instances=[world.windows], reason="x")
    _before_names_were_stored(bobs, name)
    services.access_request_approve(access_request=AccessRequest.objects.get(pk=bobs.pk), approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=bobs.pk)
    services.grant_provision(grant_id=grant_id)
    return bobs, Grant.objects.get(pk=grant_id)


def _end(access_request: AccessRequest, actor: User) -> Grant:
    services.access_request_complete(access_request=AccessRequest.objects.get(pk=access_request.pk), actor=actor)
    (grant,) = Grant.objects.filter(request=access_request)
    return grant


@override_settings(PASSPORT_USERNAME_KEY=KEY)
def test_a_grant_that_never_made_the_user_does_not_block_the_other_persons_removal(
    world: World, fleet: FakeFleet
) -> None:
    alice, bob = _pair(world)
    alices = make_active_request(alice, world.prod, world.windows)
    name = Grant.objects.get(request=alices).username
    _, bob_grant = _refused_at_create(world, bob, name)
    assert (bob_grant.status, bob_grant.ready_at) == (GrantStatus.REMOVING, None)
    assert fleet.calls == []

    # Bob's own removal is refused while Alice's user is there: it would delete her account.
    services.grant_deprovision(grant_id=bob_grant.pk)
    assert fleet.calls == []
    assert Grant.objects.get(pk=bob_grant.pk).status == GrantStatus.REMOVING

    # Alice's ends: her user is removed, Bob's never-made grant notwithstanding.
    alice_grant = _end(alices, alice)
    services.grant_deprovision(grant_id=alice_grant.pk)
    assert len(fleet.calls) == 1
    assert Grant.objects.get(pk=alice_grant.pk).status == GrantStatus.REMOVED
    assert not LogbookEntry.objects.filter(action="grant.username_taken", request_id=alices.pk).exists()

    # Then Bob's removal, tried again, runs too (nobody else's grant is on the host now).
    Grant.objects.filter(pk=bob_grant.pk).update(next_attempt_at=None)
    services.grant_deprovision(grant_id=bob_grant.pk)
    assert Grant.objects.get(pk=bob_grant.pk).status == GrantStatus.REMOVED


@override_settings(PASSPORT_USERNAME_KEY=KEY)
def test_a_grant_that_never_made_the_user_does_not_keep_its_person_under_the_shared_name(world: World) -> None:
    alice, bob = _pair(world)
    alices = make_active_request(alice, world.prod, world.windows)
    name = Grant.objects.get(request=alices).username
    _refused_at_create(world, bob, name)
    assert OsUsername.objects.get(user=bob).shares_with_id == alice.pk

    # Bob's next request is not refused for the grant that never made anything: a name of his own.
    services.access_request_create(requester=bob, account=world.prod, instances=[world.db], reason="y")
    (mine,) = OsUsername.objects.filter(user=bob)
    assert mine.shares_with_id is None and mine.name != name


@override_settings(PASSPORT_USERNAME_KEY=KEY)
@pytest.mark.parametrize("bob_ended", [False, True])
def test_a_windows_removal_is_still_refused_while_another_persons_grant_that_made_the_user_is_there(
    world: World, fleet: FakeFleet, bob_ended: bool
) -> None:
    alice, bob = _pair(world)
    alices = make_active_request(alice, world.prod, world.windows)
    name = Grant.objects.get(request=alices).username
    bobs = make_active_request(bob, world.prod, world.windows)  # his create made the user: ready_at set
    _before_names_were_stored(bobs, name)
    if bob_ended:  # his removal not run yet: the user his create made is still his to remove
        _end(bobs, bob)
    assert Grant.objects.get(request=bobs).ready_at is not None

    alice_grant = _end(alices, alice)
    services.grant_deprovision(grant_id=alice_grant.pk)
    assert fleet.calls == []  # it would have deleted the user Bob's grant made and holds
    assert Grant.objects.get(pk=alice_grant.pk).status == GrantStatus.REMOVING
    taken = LogbookEntry.objects.get(action="grant.username_taken", request_id=alices.pk)
    assert taken.detail["step"] == "remove"
